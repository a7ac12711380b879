//! SLA calendar math on the paths incidents take at every evaluation:
//! covered time over one month of office hours (Santiago, a holiday, a DST
//! change inside the span), the deadline 4 working days ahead, and the next
//! coverage transition. Measured in thread CPU time.

#[path = "common/cpu_time.rs"]
mod cpu_time;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use guardia::config::file::parse_config;
use guardia::sla::policy::PolicySet;

const OFFICE: &str = "sla:
  calendars:
    - name: office
      time_zone: America/Santiago
      hours:
        - weekdays: ['monday:friday']
          times: [{start_time: '08:00', end_time: '13:00'}, {start_time: '14:00', end_time: '18:00'}]
      holidays: ['2026-09-18', '2026-09-19']
";

/// 2026-08-20T12:00:00Z and 31 days later: the span holds Santiago's
/// September DST change and the Fiestas Patrias holidays.
const FROM_MS: i64 = 1_787_227_200_000;
const MONTH_MS: i64 = 31 * 86_400_000;

fn calendar_benches(criterion: &mut Criterion) {
    let config = parse_config(OFFICE).expect("bench config parses");
    let sla = config.sla.expect("sla section");
    let set = PolicySet::from_config(&sla).expect("calendars build");
    let office = set.calendar("office").expect("office calendar").clone();
    criterion.bench_function("sla/working_ms_between one month office hours", |bencher| {
        bencher.iter_custom(|iterations| {
            cpu_time::cpu_time_of(iterations, || {
                black_box(office.working_ms_between(black_box(FROM_MS), FROM_MS + MONTH_MS));
            })
        })
    });
    let four_working_days = 4 * 9 * 3_600_000;
    criterion.bench_function("sla/deadline_after 4 working days", |bencher| {
        bencher.iter_custom(|iterations| {
            cpu_time::cpu_time_of(iterations, || {
                black_box(office.deadline_after(black_box(FROM_MS), four_working_days));
            })
        })
    });
    criterion.bench_function("sla/next_transition", |bencher| {
        bencher.iter_custom(|iterations| {
            cpu_time::cpu_time_of(iterations, || {
                black_box(office.next_transition(black_box(FROM_MS)));
            })
        })
    });
}

criterion_group!(benches, calendar_benches);
criterion_main!(benches);
