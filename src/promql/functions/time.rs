//! Time functions: `timestamp` and the calendar functions (`minute`, `hour`,
//! `day_of_week`, `day_of_month`, `day_of_year`, `days_in_month`, `month`,
//! `year`), in UTC.

use promql_parser::parser::{Call, Expr};

use super::{Evaluator, QueryError, StepValue, argument, unwrap_parens};
use crate::model::{Labels, civil_from_days};
use crate::promql::value::Element;

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if is_leap_year(year) {
                29
            } else {
                28
            }
        }
    }
}

fn calendar(name: &str, seconds: i64) -> f64 {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    match name {
        "minute" => ((second_of_day / 60) % 60) as f64,
        "hour" => (second_of_day / 3600) as f64,
        // 1970-01-01 was a Thursday (4).
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_month" => f64::from(day),
        "day_of_year" => {
            let mut ordinal = day;
            for earlier in 1..month {
                ordinal += days_in_month(year, earlier);
            }
            f64::from(ordinal)
        }
        "days_in_month" => f64::from(days_in_month(year, month)),
        "month" => f64::from(month),
        _ => year as f64,
    }
}

pub(super) fn call(
    evaluator: &mut Evaluator<'_>,
    call: &Call,
    ts: i64,
) -> Result<StepValue, QueryError> {
    let name = call.func.name;
    if name == "timestamp" {
        let argument_expr = argument(call, 0)?;
        // Only a plain selector reports its samples' own timestamps; any
        // other expression yields values at the evaluation time.
        let is_selector = matches!(unwrap_parens(argument_expr), Expr::VectorSelector(_));
        let elements = evaluator.eval_vector(argument_expr, ts)?;
        return Ok(StepValue::Vector(
            elements
                .into_iter()
                .map(|element| Element {
                    v: if is_selector { element.t } else { ts } as f64 / 1000.0,
                    labels: element.labels,
                    t: ts,
                    drop_name: true,
                })
                .collect(),
        ));
    }
    if call.args.args.is_empty() {
        return Ok(StepValue::Vector(vec![Element {
            labels: Labels::empty(),
            t: ts,
            v: calendar(name, ts.div_euclid(1000)),
            drop_name: false,
        }]));
    }
    let elements = evaluator.eval_vector(argument(call, 0)?, ts)?;
    Ok(StepValue::Vector(
        elements
            .into_iter()
            .map(|element| Element {
                v: if element.v.is_nan() || element.v.is_infinite() {
                    f64::NAN
                } else {
                    calendar(name, element.v as i64)
                },
                labels: element.labels,
                t: ts,
                drop_name: true,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_fields_of_known_instants() {
        // 2024-02-29T13:45:00Z is a Thursday, day 60 of a leap year.
        let seconds = 1_709_214_300;
        assert_eq!(calendar("year", seconds), 2024.0);
        assert_eq!(calendar("month", seconds), 2.0);
        assert_eq!(calendar("day_of_month", seconds), 29.0);
        assert_eq!(calendar("day_of_year", seconds), 60.0);
        assert_eq!(calendar("days_in_month", seconds), 29.0);
        assert_eq!(calendar("day_of_week", seconds), 4.0);
        assert_eq!(calendar("hour", seconds), 13.0);
        assert_eq!(calendar("minute", seconds), 45.0);
        assert_eq!(calendar("year", -1), 1969.0);
    }
}
