//! Deterministic synthetic data shaped like a node_exporter scrape every
//! 15 s, for benchmarks (chunk sizes, end-to-end ingest) and fuzz seeds.
//! Shapes follow a real `prometheus-node-exporter` 1.x on Linux: about 500
//! series per host of which ~70 % do not change between scrapes; CPU
//! counters in hundredths of a second (idle rises ≈ 14.9–15.0 per 15 s per
//! core); byte counters rising by integers of varying size (disk ones by
//! whole sectors); memory gauges in whole pages; load averages with two
//! decimals; temperatures in 1/8 °C; collector durations in nanoseconds
//! (`7.2055e-05`); pressure counters summed in floating point, so their
//! values carry float noise (`36.670607000000004`); `node_time_seconds`
//! with full precision. Some hosts' scrape timestamps jitter by a few ms and
//! a rare scrape is missed. Same seed, same data.

use crate::model::{Labels, Sample, Timestamp};

/// Scrape interval of the generated hosts.
pub const SCRAPE_INTERVAL_MS: i64 = 15_000;

/// Samples per chunk in the benchmark: what the head cuts at 15 s.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Small deterministic PRNG (SplitMix64): enough for test shapes and
/// without a dependency in library code.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: i64, high: i64) -> i64 {
        let span = (high - low) as u64 + 1;
        low + (self.next_u64() % span) as i64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, probability: f64) -> bool {
        self.unit() < probability
    }
}

/// How one generated series evolves from scrape to scrape.
#[derive(Clone, Debug)]
enum Shape {
    /// Never changes.
    Constant(f64),
    /// Counter in units of 10^-decimals, rising by `low..=high` units per
    /// scrape; `idle_probability` of scrapes add nothing.
    DecimalCounter {
        units: i64,
        decimals: u32,
        low: i64,
        high: i64,
        idle_probability: f64,
    },
    /// Counter rising by a multiple of `step` around a drifting rate.
    IntegerCounter {
        value: i64,
        step: i64,
        rate: i64,
        idle_probability: f64,
    },
    /// Gauge in whole multiples of `step` taking a random walk.
    WalkingGauge {
        value: i64,
        step: i64,
        max_steps: i64,
        change_probability: f64,
    },
    /// Load average: exponential moving average with two decimals.
    LoadAverage { current: f64, smoothing: f64 },
    /// Temperature in 1/8 °C steps around a base.
    Temperature { eighths: i64 },
    /// Collector duration: a fresh number of nanoseconds each scrape.
    DurationSeconds { typical_nanos: i64 },
    /// Counter summed in f64, like node_exporter's pressure stall seconds.
    FloatSumCounter { value: f64, max_micros: i64 },
    /// Seconds since the epoch with sub-microsecond digits.
    WallClockSeconds,
}

impl Shape {
    fn next_value(&mut self, random: &mut SplitMix64, timestamp: Timestamp) -> f64 {
        match self {
            Shape::Constant(value) => *value,
            Shape::DecimalCounter {
                units,
                decimals,
                low,
                high,
                idle_probability,
            } => {
                if !random.chance(*idle_probability) {
                    *units += random.range(*low, *high);
                }
                // Division by an exact power of ten gives the same float as
                // parsing the decimal text an exporter prints.
                *units as f64 / 10f64.powi(*decimals as i32)
            }
            Shape::IntegerCounter {
                value,
                step,
                rate,
                idle_probability,
            } => {
                if !random.chance(*idle_probability) {
                    let steps = (*rate / *step).max(1);
                    let drawn = random.range(steps / 4, steps + steps / 2 + 1);
                    // Occasional bursts of ten times the usual traffic.
                    let burst = if random.chance(0.03) { 10 } else { 1 };
                    *value += drawn * *step * burst;
                }
                *value as f64
            }
            Shape::WalkingGauge {
                value,
                step,
                max_steps,
                change_probability,
            } => {
                if random.chance(*change_probability) {
                    *value = (*value + random.range(-*max_steps, *max_steps) * *step).max(0);
                }
                *value as f64
            }
            Shape::LoadAverage { current, smoothing } => {
                let running = random.range(0, 4) as f64;
                *current = *current * *smoothing + running * (1.0 - *smoothing);
                (*current * 100.0).round() / 100.0
            }
            Shape::Temperature { eighths } => {
                if random.chance(0.3) {
                    *eighths = (*eighths + random.range(-2, 2)).clamp(30 * 8, 90 * 8);
                }
                *eighths as f64 / 8.0
            }
            Shape::DurationSeconds { typical_nanos } => {
                let nanos = random.range(*typical_nanos / 2, *typical_nanos * 2);
                nanos as f64 / 1e9
            }
            Shape::FloatSumCounter { value, max_micros } => {
                *value += random.range(0, *max_micros) as f64 / 1e6;
                *value
            }
            Shape::WallClockSeconds => {
                let nanos = random.range(0, 999_999);
                timestamp as f64 / 1e3 + nanos as f64 / 1e9
            }
        }
    }
}

/// One simulated node_exporter target.
#[derive(Clone, Debug)]
pub struct NodeExporterHost {
    random: SplitMix64,
    labels: Vec<Labels>,
    shapes: Vec<Shape>,
    next_scheduled: Timestamp,
    jitter_ms: i64,
}

impl NodeExporterHost {
    /// A host whose first scrape is at `start` (ms). `host_index` varies the
    /// machine (core count, devices, jitter) and the `instance` label.
    pub fn new(seed: u64, host_index: usize, start: Timestamp) -> NodeExporterHost {
        let mut random =
            SplitMix64::new(seed ^ (host_index as u64).wrapping_mul(0xa076_1d64_78bd_642f));
        let instance = format!("host-{host_index:04}:9100");
        let mut builder = SeriesBuilder {
            instance,
            labels: Vec::new(),
            shapes: Vec::new(),
        };
        build_host_series(&mut builder, &mut random, host_index);
        // One host in four has scrape timestamps that jitter by a few ms.
        let jitter_ms = if host_index % 4 == 3 { 4 } else { 0 };
        NodeExporterHost {
            random,
            labels: builder.labels,
            shapes: builder.shapes,
            next_scheduled: start,
            jitter_ms,
        }
    }

    /// Label sets of the series, in the order `scrape` returns values.
    pub fn labels(&self) -> &[Labels] {
        &self.labels
    }

    pub fn series_count(&self) -> usize {
        self.shapes.len()
    }

    /// Advances one scrape and writes one value per series into `values`.
    /// Returns the scrape timestamp.
    pub fn scrape(&mut self, values: &mut Vec<f64>) -> Timestamp {
        // A missed scrape (target briefly unreachable) leaves a 30 s gap.
        if self.random.chance(0.002) {
            self.next_scheduled += SCRAPE_INTERVAL_MS;
        }
        let jitter = if self.jitter_ms > 0 {
            self.random.range(-self.jitter_ms, self.jitter_ms)
        } else {
            0
        };
        let timestamp = self.next_scheduled + jitter;
        self.next_scheduled += SCRAPE_INTERVAL_MS;
        values.clear();
        for shape in &mut self.shapes {
            values.push(shape.next_value(&mut self.random, timestamp));
        }
        timestamp
    }
}

struct SeriesBuilder {
    instance: String,
    labels: Vec<Labels>,
    shapes: Vec<Shape>,
}

impl SeriesBuilder {
    fn add(&mut self, name: &str, extra: &[(&str, &str)], shape: Shape) {
        let mut pairs: Vec<(String, String)> = vec![
            ("__name__".to_string(), name.to_string()),
            ("instance".to_string(), self.instance.clone()),
            ("job".to_string(), "node".to_string()),
        ];
        pairs.extend(
            extra
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string())),
        );
        self.labels.push(Labels::from_pairs(pairs));
        self.shapes.push(shape);
    }
}

fn build_host_series(builder: &mut SeriesBuilder, random: &mut SplitMix64, host_index: usize) {
    let cores = [2usize, 4, 8][host_index % 3];
    let uptime_hundredths = random.range(10_000, 100_000_000);
    for core in 0..cores {
        let cpu = core.to_string();
        let counter =
            |random: &mut SplitMix64, low, high, idle_probability| Shape::DecimalCounter {
                units: random.range(0, uptime_hundredths / 10),
                decimals: 2,
                low,
                high,
                idle_probability,
            };
        let idle_shape = counter(random, 1_480, 1_500, 0.0);
        builder.add(
            "node_cpu_seconds_total",
            &[("cpu", &cpu), ("mode", "idle")],
            idle_shape,
        );
        let user_shape = counter(random, 0, 150, 0.05);
        builder.add(
            "node_cpu_seconds_total",
            &[("cpu", &cpu), ("mode", "user")],
            user_shape,
        );
        let system_shape = counter(random, 0, 40, 0.1);
        builder.add(
            "node_cpu_seconds_total",
            &[("cpu", &cpu), ("mode", "system")],
            system_shape,
        );
        for (mode, idle_probability) in [("iowait", 0.7), ("softirq", 0.6), ("steal", 0.8)] {
            let shape = counter(random, 1, 3, idle_probability);
            builder.add(
                "node_cpu_seconds_total",
                &[("cpu", &cpu), ("mode", mode)],
                shape,
            );
        }
        for mode in ["irq", "nice"] {
            builder.add(
                "node_cpu_seconds_total",
                &[("cpu", &cpu), ("mode", mode)],
                Shape::Constant(0.0),
            );
        }
        let frequency = [1.8e9, 2.4e9, 3.1e9][core % 3];
        builder.add(
            "node_cpu_scaling_frequency_hertz",
            &[("cpu", &cpu)],
            Shape::Constant(frequency),
        );
        builder.add(
            "node_cpu_scaling_frequency_max_hertz",
            &[("cpu", &cpu)],
            Shape::Constant(3.5e9),
        );
        builder.add(
            "node_cpu_scaling_frequency_min_hertz",
            &[("cpu", &cpu)],
            Shape::Constant(8e8),
        );
        builder.add(
            "node_cpu_guest_seconds_total",
            &[("cpu", &cpu), ("mode", "user")],
            Shape::Constant(0.0),
        );
        builder.add(
            "node_cpu_guest_seconds_total",
            &[("cpu", &cpu), ("mode", "nice")],
            Shape::Constant(0.0),
        );
        builder.add(
            "node_softnet_processed_total",
            &[("cpu", &cpu)],
            Shape::IntegerCounter {
                value: random.range(0, 1_000_000),
                step: 1,
                rate: 12,
                idle_probability: 0.2,
            },
        );
        for name in [
            "node_softnet_dropped_total",
            "node_softnet_times_squeezed_total",
        ] {
            builder.add(name, &[("cpu", &cpu)], Shape::Constant(0.0));
        }
    }

    for device in ["eth0", "eth1", "lo"] {
        let labels = [("device", device)];
        let rate = [400_000, 20_000, 3_000][device.len() % 3];
        for name in [
            "node_network_receive_bytes_total",
            "node_network_transmit_bytes_total",
        ] {
            let shape = Shape::IntegerCounter {
                value: random.range(0, 1 << 40),
                step: 1,
                rate,
                idle_probability: 0.0,
            };
            builder.add(name, &labels, shape);
        }
        for name in [
            "node_network_receive_packets_total",
            "node_network_transmit_packets_total",
        ] {
            let shape = Shape::IntegerCounter {
                value: random.range(0, 1 << 30),
                step: 1,
                rate: rate / 600 + 1,
                idle_probability: 0.02,
            };
            builder.add(name, &labels, shape);
        }
        for name in [
            "node_network_receive_errs_total",
            "node_network_transmit_errs_total",
            "node_network_receive_drop_total",
            "node_network_transmit_drop_total",
            "node_network_receive_fifo_total",
            "node_network_transmit_fifo_total",
            "node_network_receive_compressed_total",
            "node_network_transmit_compressed_total",
            "node_network_receive_multicast_total",
            "node_network_transmit_colls_total",
        ] {
            builder.add(name, &labels, Shape::Constant(0.0));
        }
        for (name, value) in [
            ("node_network_mtu_bytes", 1500.0),
            ("node_network_up", 1.0),
            ("node_network_speed_bytes", 1.25e8),
            ("node_network_carrier", 1.0),
            ("node_network_transmit_queue_length", 1000.0),
            ("node_network_flags", 4099.0),
            ("node_network_iface_id", 2.0),
            ("node_network_protocol_type", 1.0),
            ("node_network_info", 1.0),
            ("node_network_address_assign_type", 0.0),
            ("node_network_dormant", 0.0),
            ("node_network_net_dev_group", 0.0),
            ("node_network_carrier_changes_total", 2.0),
        ] {
            builder.add(name, &labels, Shape::Constant(value));
        }
    }

    for device in ["sda", "sdb"] {
        let labels = [("device", device)];
        for name in [
            "node_disk_read_bytes_total",
            "node_disk_written_bytes_total",
        ] {
            let shape = Shape::IntegerCounter {
                value: random.range(0, 1 << 20) * 512,
                step: 4096,
                rate: 300_000,
                idle_probability: 0.4,
            };
            builder.add(name, &labels, shape);
        }
        for name in [
            "node_disk_reads_completed_total",
            "node_disk_writes_completed_total",
            "node_disk_writes_merged_total",
        ] {
            let shape = Shape::IntegerCounter {
                value: random.range(0, 1 << 24),
                step: 1,
                rate: 60,
                idle_probability: 0.4,
            };
            builder.add(name, &labels, shape);
        }
        for name in [
            "node_disk_io_time_seconds_total",
            "node_disk_write_time_seconds_total",
            "node_disk_read_time_seconds_total",
        ] {
            let shape = Shape::DecimalCounter {
                units: random.range(0, 1 << 24),
                decimals: 3,
                low: 0,
                high: 90,
                idle_probability: 0.4,
            };
            builder.add(name, &labels, shape);
        }
        for name in [
            "node_disk_reads_merged_total",
            "node_disk_discards_completed_total",
            "node_disk_discards_merged_total",
            "node_disk_discarded_sectors_total",
            "node_disk_discard_time_seconds_total",
            "node_disk_io_now",
            "node_disk_flush_requests_total",
            "node_disk_flush_requests_time_seconds_total",
            "node_disk_info",
        ] {
            builder.add(name, &labels, Shape::Constant(random.range(0, 5000) as f64));
        }
    }

    for (mountpoint, busy) in [
        ("/", true),
        ("/var", true),
        ("/boot", false),
        ("/run", false),
        ("/home", false),
    ] {
        let labels = [("mountpoint", mountpoint), ("fstype", "ext4")];
        let size_bytes = random.range(1 << 16, 1 << 26) * 4096;
        for name in ["node_filesystem_avail_bytes", "node_filesystem_free_bytes"] {
            let shape = if busy {
                Shape::WalkingGauge {
                    value: size_bytes / 2,
                    step: 4096,
                    max_steps: 200,
                    change_probability: 0.5,
                }
            } else {
                Shape::Constant((size_bytes / 2) as f64)
            };
            builder.add(name, &labels, shape);
        }
        let files_shape = if busy {
            Shape::WalkingGauge {
                value: random.range(100_000, 10_000_000),
                step: 1,
                max_steps: 20,
                change_probability: 0.3,
            }
        } else {
            Shape::Constant(random.range(100_000, 10_000_000) as f64)
        };
        builder.add("node_filesystem_files_free", &labels, files_shape);
        for (name, value) in [
            ("node_filesystem_size_bytes", size_bytes as f64),
            ("node_filesystem_files", 16_777_216.0),
            ("node_filesystem_readonly", 0.0),
            ("node_filesystem_device_error", 0.0),
        ] {
            builder.add(name, &labels, Shape::Constant(value));
        }
    }

    let memory_total = [4i64, 16, 64][host_index % 3] << 30;
    for (name, changing) in [
        ("MemFree", true),
        ("MemAvailable", true),
        ("Buffers", true),
        ("Cached", true),
        ("Active", true),
        ("Inactive", true),
        ("Active_anon", true),
        ("Inactive_anon", true),
        ("Active_file", true),
        ("Inactive_file", true),
        ("Dirty", true),
        ("AnonPages", true),
        ("Mapped", false),
        ("Shmem", false),
        ("Slab", true),
        ("SReclaimable", true),
        ("SUnreclaim", false),
        ("KernelStack", false),
        ("PageTables", false),
        ("Committed_AS", true),
        ("VmallocUsed", false),
    ] {
        let value = random.range(1, memory_total / 4096 / 4) * 4096;
        let shape = if changing {
            Shape::WalkingGauge {
                value,
                step: 4096,
                max_steps: 2_000,
                change_probability: 0.8,
            }
        } else {
            Shape::Constant(value as f64)
        };
        builder.add(&format!("node_memory_{name}_bytes"), &[], shape);
    }
    for name in [
        "MemTotal",
        "SwapTotal",
        "SwapFree",
        "SwapCached",
        "Unevictable",
        "Mlocked",
        "Writeback",
        "NFS_Unstable",
        "Bounce",
        "WritebackTmp",
        "CommitLimit",
        "VmallocTotal",
        "VmallocChunk",
        "HardwareCorrupted",
        "AnonHugePages",
        "ShmemHugePages",
        "ShmemPmdMapped",
        "FileHugePages",
        "FilePmdMapped",
        "CmaTotal",
        "CmaFree",
        "HugePages_Total",
        "HugePages_Free",
        "HugePages_Rsvd",
        "HugePages_Surp",
        "Hugepagesize",
        "Hugetlb",
        "DirectMap4k",
        "DirectMap2M",
        "DirectMap1G",
        "Percpu",
        "KReclaimable",
        "Zswap",
        "Zswapped",
    ] {
        builder.add(
            &format!("node_memory_{name}_bytes"),
            &[],
            Shape::Constant((random.range(0, memory_total / 4096) * 4096) as f64),
        );
    }

    for (name, smoothing) in [
        ("node_load1", 0.78),
        ("node_load5", 0.95),
        ("node_load15", 0.983),
    ] {
        builder.add(
            name,
            &[],
            Shape::LoadAverage {
                current: random.range(0, 300) as f64 / 100.0,
                smoothing,
            },
        );
    }
    for sensor in ["temp1", "temp2", "temp3"] {
        builder.add(
            "node_hwmon_temp_celsius",
            &[("chip", "coretemp"), ("sensor", sensor)],
            Shape::Temperature {
                eighths: random.range(35 * 8, 60 * 8),
            },
        );
        builder.add(
            "node_hwmon_temp_crit_celsius",
            &[("chip", "coretemp"), ("sensor", sensor)],
            Shape::Constant(100.0),
        );
        builder.add(
            "node_hwmon_temp_max_celsius",
            &[("chip", "coretemp"), ("sensor", sensor)],
            Shape::Constant(84.0),
        );
    }

    for (name, rate) in [
        ("node_context_switches_total", 1_500),
        ("node_intr_total", 1_300),
        ("node_forks_total", 30),
        ("node_vmstat_pgfault", 9_000),
        ("node_vmstat_pgpgin", 40),
        ("node_vmstat_pgpgout", 3_000),
        ("node_netstat_Tcp_InSegs", 40),
        ("node_netstat_Tcp_OutSegs", 40),
        ("node_netstat_IpExt_InOctets", 60_000),
        ("node_netstat_IpExt_OutOctets", 60_000),
        ("node_netstat_Udp_InDatagrams", 5),
    ] {
        let shape = Shape::IntegerCounter {
            value: random.range(0, 1 << 32),
            step: 1,
            rate,
            idle_probability: 0.05,
        };
        builder.add(name, &[], shape);
    }
    for name in [
        "node_vmstat_pgmajfault",
        "node_netstat_Tcp_ActiveOpens",
        "node_netstat_Tcp_PassiveOpens",
        "node_netstat_Tcp_RetransSegs",
    ] {
        let shape = Shape::IntegerCounter {
            value: random.range(0, 1 << 16),
            step: 1,
            rate: 1,
            idle_probability: 0.7,
        };
        builder.add(name, &[], shape);
    }
    for name in [
        "node_procs_running",
        "node_procs_blocked",
        "node_sockstat_TCP_tw",
        "node_sockstat_sockets_used",
        "node_filefd_allocated",
    ] {
        let shape = Shape::WalkingGauge {
            value: random.range(0, 400),
            step: 1,
            max_steps: 2,
            change_probability: 0.4,
        };
        builder.add(name, &[], shape);
    }

    for resource in [
        "cpu_waiting",
        "io_waiting",
        "io_stalled",
        "memory_waiting",
        "memory_stalled",
    ] {
        let max_micros = if resource.starts_with("cpu") {
            40_000
        } else {
            5_000
        };
        let shape = Shape::FloatSumCounter {
            value: random.range(0, 100_000_000) as f64 / 1e6,
            max_micros,
        };
        builder.add(
            &format!("node_pressure_{resource}_seconds_total"),
            &[],
            shape,
        );
    }
    builder.add("node_time_seconds", &[], Shape::WallClockSeconds);

    for collector in [
        "arp",
        "bcache",
        "bonding",
        "btrfs",
        "conntrack",
        "cpu",
        "cpufreq",
        "diskstats",
        "dmi",
        "edac",
        "entropy",
        "fibrechannel",
        "filefd",
        "filesystem",
        "hwmon",
        "infiniband",
        "ipvs",
        "loadavg",
        "mdadm",
        "meminfo",
        "netclass",
        "netdev",
        "netstat",
        "nfs",
        "nfsd",
        "nvme",
        "os",
        "powersupplyclass",
        "pressure",
        "rapl",
        "schedstat",
        "selinux",
        "sockstat",
        "softnet",
        "stat",
        "systemd",
        "tapestats",
        "textfile",
        "thermal_zone",
        "time",
        "timex",
        "udp_queues",
        "uname",
        "vmstat",
        "xfs",
        "zfs",
    ] {
        let labels = [("collector", collector)];
        let typical_nanos = random.range(5_000, 400_000);
        builder.add(
            "node_scrape_collector_duration_seconds",
            &labels,
            Shape::DurationSeconds { typical_nanos },
        );
        builder.add(
            "node_scrape_collector_success",
            &labels,
            Shape::Constant(1.0),
        );
    }

    for name in [
        "go_memstats_alloc_bytes",
        "go_memstats_heap_alloc_bytes",
        "go_memstats_heap_inuse_bytes",
        "go_memstats_heap_idle_bytes",
        "go_memstats_stack_inuse_bytes",
        "process_resident_memory_bytes",
    ] {
        let shape = Shape::WalkingGauge {
            value: random.range(1 << 20, 1 << 24),
            step: 8,
            max_steps: 100_000,
            change_probability: 0.9,
        };
        builder.add(name, &[], shape);
    }
    for (name, rate) in [
        ("go_memstats_alloc_bytes_total", 900_000),
        ("go_memstats_mallocs_total", 12_000),
        ("go_memstats_frees_total", 12_000),
    ] {
        let shape = Shape::IntegerCounter {
            value: random.range(0, 1 << 30),
            step: 1,
            rate,
            idle_probability: 0.0,
        };
        builder.add(name, &[], shape);
    }
    let process_cpu = Shape::DecimalCounter {
        units: random.range(0, 100_000),
        decimals: 2,
        low: 0,
        high: 3,
        idle_probability: 0.3,
    };
    builder.add("process_cpu_seconds_total", &[], process_cpu);
    builder.add(
        "promhttp_metric_handler_requests_total",
        &[("code", "200")],
        Shape::IntegerCounter {
            value: random.range(0, 100_000),
            step: 1,
            rate: 1,
            idle_probability: 0.0,
        },
    );
    for (name, value) in [
        ("go_goroutines", 8.0),
        ("go_threads", 7.0),
        ("process_max_fds", 1_048_576.0),
        ("process_open_fds", 10.0),
        ("process_start_time_seconds", 1.79547120713e9),
        ("process_virtual_memory_max_bytes", 1.8446744073709552e19),
        ("go_memstats_gc_sys_bytes", 8_178_952.0),
        ("go_memstats_sys_bytes", 14_398_728.0),
        ("go_memstats_mspan_sys_bytes", 65_088.0),
        ("go_memstats_buck_hash_sys_bytes", 1_445_737.0),
        ("go_memstats_mcache_inuse_bytes", 2_400.0),
        ("go_memstats_mcache_sys_bytes", 15_600.0),
        ("go_memstats_next_gc_bytes", 4_194_304.0),
        ("go_memstats_lookups_total", 0.0),
        ("go_gc_duration_seconds_count", 3.0),
        ("go_memstats_last_gc_time_seconds", 1.7954715658287814e9),
        ("go_info", 1.0),
        ("node_exporter_build_info", 1.0),
        ("node_uname_info", 1.0),
        ("node_os_info", 1.0),
        ("node_boot_time_seconds", 1.795470416e9),
        ("node_entropy_available_bits", 256.0),
        ("node_entropy_pool_size_bits", 256.0),
        ("node_filefd_maximum", 9.223372036854776e18),
        ("node_nf_conntrack_entries_limit", 262_144.0),
        ("node_timex_offset_seconds", 0.0),
        ("node_timex_sync_status", 1.0),
        ("node_timex_frequency_adjustment_ratio", 1.0000127),
        ("node_timex_maxerror_seconds", 16.0),
        ("node_timex_tai_offset_seconds", 0.0),
        ("node_systemd_units", 120.0),
        ("node_textfile_scrape_error", 0.0),
        ("node_selinux_enabled", 0.0),
    ] {
        builder.add(name, &[], Shape::Constant(value));
    }
    for quantile in ["0", "0.25", "0.5", "0.75", "1"] {
        builder.add(
            "go_gc_duration_seconds",
            &[("quantile", quantile)],
            Shape::Constant(random.range(10_000, 90_000) as f64 / 1e9),
        );
    }
    for state in ["active", "inactive", "failed", "activating", "deactivating"] {
        for unit in [
            "ssh.service",
            "cron.service",
            "systemd-journald.service",
            "rsyslog.service",
            "networkd.service",
        ] {
            let value = if state == "active" { 1.0 } else { 0.0 };
            builder.add(
                "node_systemd_unit_state",
                &[("name", unit), ("state", state)],
                Shape::Constant(value),
            );
        }
    }
    for interrupt in 0..40 {
        let interrupt = format!("{interrupt}");
        builder.add(
            "node_interrupts_total",
            &[("cpu", "0"), ("devices", "irq"), ("type", &interrupt)],
            Shape::Constant(random.range(0, 1000) as f64),
        );
    }
}

/// Chunks of `samples_per_chunk` consecutive samples of every series of
/// `host_count` hosts, `chunks_per_series` chunks each, starting at a fixed
/// 2024 date. Deterministic for a seed.
pub fn node_exporter_chunks(
    seed: u64,
    host_count: usize,
    chunks_per_series: usize,
    samples_per_chunk: usize,
) -> Vec<Vec<Sample>> {
    let start: Timestamp = 1_717_200_000_000;
    let mut chunks = Vec::new();
    let mut values = Vec::new();
    for host_index in 0..host_count {
        let mut host = NodeExporterHost::new(seed, host_index, start + host_index as i64 * 977);
        let mut series: Vec<Vec<Sample>> =
            vec![Vec::with_capacity(samples_per_chunk); host.series_count()];
        for _ in 0..chunks_per_series * samples_per_chunk {
            let timestamp = host.scrape(&mut values);
            for (samples, &value) in series.iter_mut().zip(&values) {
                samples.push(Sample {
                    t: timestamp,
                    v: value,
                });
                if samples.len() == samples_per_chunk {
                    chunks.push(std::mem::replace(
                        samples,
                        Vec::with_capacity(samples_per_chunk),
                    ));
                }
            }
        }
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_and_about_seventy_percent_constant() {
        let first = node_exporter_chunks(7, 2, 1, 120);
        let second = node_exporter_chunks(7, 2, 1, 120);
        assert_eq!(first.len(), second.len());
        assert!(
            first
                .iter()
                .zip(&second)
                .all(|(a, b)| a.iter().zip(b).all(|(x, y)| x.bit_eq(y)))
        );
        let unchanged_steps: usize = first
            .iter()
            .map(|chunk| {
                chunk
                    .windows(2)
                    .filter(|pair| pair[0].v.to_bits() == pair[1].v.to_bits())
                    .count()
            })
            .sum();
        let steps: usize = first.iter().map(|chunk| chunk.len() - 1).sum();
        let unchanged_share = unchanged_steps as f64 / steps as f64;
        assert!(
            (0.6..0.8).contains(&unchanged_share),
            "unchanged share {unchanged_share}"
        );
    }

    #[test]
    fn host_series_have_distinct_label_sets() {
        let host = NodeExporterHost::new(1, 0, 0);
        let mut labels = host.labels().to_vec();
        let count = labels.len();
        labels.sort_by_key(|set| format!("{set:?}"));
        labels.dedup();
        assert_eq!(labels.len(), count);
        assert!(count > 400, "{count} series");
    }
}
