//! Packed encodings (encoding bytes `0x02`–`0x04`), chosen at seal time when
//! they beat Gorilla. Timestamps, and values that are exact decimals, are
//! coded as integer sequences: differences of order 0, 1 or 2 or residuals
//! from a line, minus a
//! chunk-wide minimum, divided by a chunk-wide common factor, in a chunk-wide
//! bit width with an escape for the few that do not fit. Regular scrapes then
//! cost 0 bits per timestamp and an unchanged value 0 bits per sample.
//! Values that are not exact decimals use the XOR code of Gorilla.
//! `docs/chunk-format.md` has the layout with examples.

use super::ChunkError;
use super::bits::{
    BitReader, BitWriter, read_var, var_cost_bits, write_var, zigzag_decode, zigzag_encode,
};
use super::gorilla::XorWindow;
use crate::model::Sample;

// Layout is:
//
//   byte 0      encoding: 0x02 decimal values, 0x03 XOR values,
//               0x04 values as raw IEEE bit patterns
//   bytes 1..   sample count n, LEB128 (1 ≤ n ≤ MAX_PACKED_SAMPLES)
//   then a bit stream, most significant bit first, zero-padded to a byte:
//     timestamp sequence header  (integer sequence over t_i)
//     value header:
//       0x02: exponent e (5 bits, ≤ MAX_DECIMAL_EXPONENT), then an integer
//             sequence header over m_i where v_i = m_i / 10^e (m_i as f64,
//             one correctly rounded IEEE division; e = 0: v_i = m_i as f64)
//       0x03: v_0 as 64 bits
//       0x04: integer sequence header over bits(v_i)
//     for each sample i in 0..n: its timestamp code, then its value code
//     (a sequence keeps the first h samples in its header and has no code
//     for them, h = 0, 1, 2, 1 for k = 0, 1, 2, 3; XOR values have no code
//     for i = 0 and the Gorilla value code after)
//
//   integer sequence header, for model k and values x_i (mod 2^64):
//     k                       2 bits
//     x_0                     var(zigzag), when k ≠ 0
//     d_1 = x_1 − x_0         var(zigzag), when k = 2 and n ≥ 2
//     and, when n > h:
//       step s                var(zigzag), when k = 3
//       min                   var(zigzag): minimum of the coded items as i64
//       has_factor            1 bit; when 1: factor g as var (else g = 1)
//       width w               7 bits (0..=64)
//   the coded item of sample i ≥ h, all wrapping, is
//     k = 0  x_i                        (values)
//     k = 1  d_i = x_i − x_{i−1}        (deltas)
//     k = 2  d_i − d_{i−1}              (delta of deltas)
//     k = 3  x_i − x_0 − i·s            (residual from a line: jitter)
//   and item = min + q·g
//   integer sequence code: q in w bits; when w > 0 and q = 2^w − 1 (all
//   ones) an escape follows: q += var
//
//   var(x): 6 bits holding (significant bits of x) − 1, then those bits
//   (x = 0 takes one bit).

pub(crate) const ENCODING_PACKED_DECIMAL: u8 = 0x02;
pub(crate) const ENCODING_PACKED_XOR: u8 = 0x03;
pub(crate) const ENCODING_PACKED_BITS: u8 = 0x04;

/// Most samples a packed chunk holds. Packed codes can take 0 bits per
/// sample, so the count must be bounded for a corrupt header not to ask the
/// decoder for unbounded output; the head cuts chunks far below this.
pub(crate) const MAX_PACKED_SAMPLES: usize = 1 << 16;

/// Largest decimal exponent: 10^18 is exact in f64 and covers the nanosecond
/// fractions (`2.3494e-05`) that exporters print.
pub(crate) const MAX_DECIMAL_EXPONENT: u32 = 18;

/// Integer sequence models: what the per-sample codes are.
const ORDER_VALUES: u8 = 0;
const ORDER_DELTAS: u8 = 1;
const ORDER_DELTAS_OF_DELTAS: u8 = 2;
const ORDER_LINEAR: u8 = 3;

/// Decimal values are kept only while |m| ≤ 2^53, where `m as f64` is exact.
const MAX_EXACT_INTEGER: i64 = 1 << 53;

const POWERS_OF_TEN: [f64; MAX_DECIMAL_EXPONENT as usize + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];

const INTEGER_POWERS_OF_TEN: [i64; MAX_DECIMAL_EXPONENT as usize + 1] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
];

/// How one integer sequence is coded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SequencePlan {
    order: u8,
    /// Slope of the line for [`ORDER_LINEAR`].
    step: u64,
    min: u64,
    factor: u64,
    width: u32,
    cost_bits: u64,
}

/// How the values of a packed chunk are coded.
#[derive(Clone, Debug)]
enum ValuePlan {
    Decimal {
        exponent: u32,
        integers: Vec<u64>,
        sequence: SequencePlan,
    },
    Bits {
        sequence: SequencePlan,
    },
    Xor {
        cost_bits: u64,
    },
}

impl ValuePlan {
    fn cost_bits(&self) -> u64 {
        match self {
            ValuePlan::Decimal { sequence, .. } => 5 + sequence.cost_bits,
            ValuePlan::Bits { sequence } => sequence.cost_bits,
            ValuePlan::Xor { cost_bits } => *cost_bits,
        }
    }

    fn encoding(&self) -> u8 {
        match self {
            ValuePlan::Decimal { .. } => ENCODING_PACKED_DECIMAL,
            ValuePlan::Bits { .. } => ENCODING_PACKED_BITS,
            ValuePlan::Xor { .. } => ENCODING_PACKED_XOR,
        }
    }
}

/// The cheapest packed layout for some samples, ready to write.
#[derive(Clone, Debug)]
pub(crate) struct PackedPlan {
    timestamps: Vec<u64>,
    timestamp_plan: SequencePlan,
    value_plan: ValuePlan,
}

impl PackedPlan {
    /// Bits of the stream after the count (header and codes).
    pub(crate) fn cost_bits(&self) -> u64 {
        self.timestamp_plan.cost_bits + self.value_plan.cost_bits()
    }

    pub(crate) fn encoding(&self) -> u8 {
        self.value_plan.encoding()
    }
}

/// Plans the packed layout of `samples` (1 ≤ len ≤ MAX_PACKED_SAMPLES).
pub(crate) fn plan(samples: &[Sample]) -> PackedPlan {
    let timestamps: Vec<u64> = samples.iter().map(|sample| sample.t as u64).collect();
    let timestamp_plan = plan_sequence(&timestamps, true);
    let value_bits: Vec<u64> = samples.iter().map(|sample| sample.v.to_bits()).collect();

    let mut best = ValuePlan::Xor {
        cost_bits: xor_cost_bits(&value_bits),
    };
    if let Some((exponent, integers)) = decimal_integers(samples) {
        let sequence = plan_sequence(&integers, false);
        let candidate = ValuePlan::Decimal {
            exponent,
            integers,
            sequence,
        };
        if candidate.cost_bits() < best.cost_bits() {
            best = candidate;
        }
    }
    // Raw bit patterns win only on oddities such as a chunk of one NaN
    // payload repeated, so try them only when the values never change.
    if value_bits.iter().all(|&bits| bits == value_bits[0]) {
        let candidate = ValuePlan::Bits {
            sequence: plan_sequence(&value_bits, false),
        };
        if candidate.cost_bits() < best.cost_bits() {
            best = candidate;
        }
    }
    PackedPlan {
        timestamps,
        timestamp_plan,
        value_plan: best,
    }
}

/// Writes the bit stream (everything after the count) of a planned chunk.
pub(crate) fn write(plan: &PackedPlan, samples: &[Sample], writer: &mut BitWriter) {
    let timestamps = &plan.timestamps;
    let mut timestamp_coder = SequenceCoder::new(plan.timestamp_plan);
    timestamp_coder.write_header(writer, timestamps);
    match &plan.value_plan {
        ValuePlan::Decimal {
            exponent,
            integers,
            sequence,
        } => {
            writer.write(u64::from(*exponent), 5);
            let mut value_coder = SequenceCoder::new(*sequence);
            value_coder.write_header(writer, integers);
            for index in 0..samples.len() {
                timestamp_coder.write_code(writer, timestamps, index);
                value_coder.write_code(writer, integers, index);
            }
        }
        ValuePlan::Bits { sequence } => {
            let value_bits: Vec<u64> = samples.iter().map(|sample| sample.v.to_bits()).collect();
            let mut value_coder = SequenceCoder::new(*sequence);
            value_coder.write_header(writer, &value_bits);
            for index in 0..samples.len() {
                timestamp_coder.write_code(writer, timestamps, index);
                value_coder.write_code(writer, &value_bits, index);
            }
        }
        ValuePlan::Xor { .. } => {
            let mut last_value_bits = samples[0].v.to_bits();
            writer.write(last_value_bits, 64);
            let mut window = XorWindow::new();
            for (index, sample) in samples.iter().enumerate() {
                timestamp_coder.write_code(writer, timestamps, index);
                if index > 0 {
                    let value_bits = sample.v.to_bits();
                    window.write(writer, value_bits ^ last_value_bits);
                    last_value_bits = value_bits;
                }
            }
        }
    }
}

fn xor_cost_bits(value_bits: &[u64]) -> u64 {
    let mut window = XorWindow::new();
    let mut bits = 64;
    for pair in value_bits.windows(2) {
        bits += window.cost(pair[1] ^ pair[0]);
    }
    bits
}

/// Smallest exponent e with every value exactly m / 10^e for an integer
/// |m| ≤ 2^53, and those integers; `None` when some value has none (NaN,
/// ±Inf, −0.0, too many digits).
fn decimal_integers(samples: &[Sample]) -> Option<(u32, Vec<u64>)> {
    let mut integers: Vec<u64> = Vec::with_capacity(samples.len());
    let mut chunk_exponent = 0u32;
    let mut last_bits: Option<u64> = None;
    for sample in samples {
        let bits = sample.v.to_bits();
        // Series repeat values often; reuse the last answer for equal bits.
        if last_bits == Some(bits)
            && let Some(&last_integer) = integers.last()
        {
            integers.push(last_integer);
            continue;
        }
        last_bits = Some(bits);
        // A value with fewer decimals is also exact at the chunk's exponent
        // (m/10^e and m·10^k/10^(e+k) are the same rational, so the correctly
        // rounded division gives the same float): one check per value.
        let mantissa = match decimal_at(sample.v, chunk_exponent) {
            DecimalCheck::Exact(mantissa) => mantissa,
            DecimalCheck::TooLarge => return None,
            DecimalCheck::Inexact => {
                let (exponent, mantissa) = decimal_from(sample.v, chunk_exponent + 1)?;
                let scale = INTEGER_POWERS_OF_TEN[(exponent - chunk_exponent) as usize];
                for integer in &mut integers {
                    let rescaled = (*integer as i64).checked_mul(scale)?;
                    if rescaled.unsigned_abs() > MAX_EXACT_INTEGER as u64 {
                        return None;
                    }
                    *integer = rescaled as u64;
                }
                chunk_exponent = exponent;
                mantissa
            }
        };
        integers.push(mantissa as u64);
    }
    Some((chunk_exponent, integers))
}

enum DecimalCheck {
    Exact(i64),
    Inexact,
    /// The mantissa would pass 2^53 here and at every larger exponent.
    TooLarge,
}

#[inline]
fn decimal_at(value: f64, exponent: u32) -> DecimalCheck {
    if !value.is_finite() {
        return DecimalCheck::TooLarge;
    }
    let scaled = (value * POWERS_OF_TEN[exponent as usize]).round();
    if scaled.abs() > MAX_EXACT_INTEGER as f64 {
        return DecimalCheck::TooLarge;
    }
    let mantissa = scaled as i64;
    if decimal_value(mantissa, exponent).to_bits() == value.to_bits() {
        DecimalCheck::Exact(mantissa)
    } else {
        DecimalCheck::Inexact
    }
}

/// Smallest (e ≥ `first_exponent`, m) with `decimal_value(m, e)`
/// bit-identical to `value`.
fn decimal_from(value: f64, first_exponent: u32) -> Option<(u32, i64)> {
    for exponent in first_exponent..=MAX_DECIMAL_EXPONENT {
        match decimal_at(value, exponent) {
            DecimalCheck::Exact(mantissa) => return Some((exponent, mantissa)),
            DecimalCheck::Inexact => {}
            DecimalCheck::TooLarge => return None,
        }
    }
    None
}

#[cfg(test)]
fn decimal_of(value: f64) -> Option<(u32, i64)> {
    decimal_from(value, 0)
}

#[inline]
fn decimal_value(mantissa: i64, exponent: u32) -> f64 {
    if exponent == 0 {
        mantissa as f64
    } else {
        mantissa as f64 / POWERS_OF_TEN[exponent as usize]
    }
}

/// Chooses order, minimum, factor and width for `values` (mod 2^64);
/// `try_linear` adds the line model, which only timestamps need.
fn plan_sequence(values: &[u64], try_linear: bool) -> SequencePlan {
    let first_head = head_cost(values.first());
    let deltas = values.windows(2).map(|pair| pair[1].wrapping_sub(pair[0]));
    let plan = plan_items(ORDER_DELTAS, 0, deltas, 2 + first_head);
    if plan.width == 0 {
        // Nothing per sample: only a cheaper header could win, and the other
        // models' headers are no smaller.
        return plan;
    }
    let mut best = plan;
    let plan = plan_items(ORDER_VALUES, 0, values.iter().copied(), 2);
    if plan.cost_bits < best.cost_bits {
        best = plan;
    }
    let second_head = head_cost(
        values
            .get(1)
            .map(|&second| second.wrapping_sub(values[0]))
            .as_ref(),
    );
    let deltas_of_deltas = values.windows(3).map(|triple| {
        triple[2]
            .wrapping_sub(triple[1])
            .wrapping_sub(triple[1].wrapping_sub(triple[0]))
    });
    let plan = plan_items(
        ORDER_DELTAS_OF_DELTAS,
        0,
        deltas_of_deltas,
        2 + first_head + second_head,
    );
    if plan.cost_bits < best.cost_bits {
        best = plan;
    }
    // Jitter around a fixed grid is noise, not a random walk: residuals
    // from the line through the first and last value spread half as far as
    // the differences do.
    if try_linear && best.width > 0 && values.len() >= 3 {
        let first = values[0];
        let span = values[values.len() - 1].wrapping_sub(first) as i64 as i128;
        let intervals = (values.len() - 1) as i128;
        let step = ((span + intervals / 2).div_euclid(intervals)) as i64 as u64;
        let residuals = values
            .iter()
            .enumerate()
            .skip(1)
            .map(move |(index, &value)| linear_residual(value, first, step, index));
        let header_bits = 2 + first_head + var_cost_bits(zigzag_encode(step as i64));
        let plan = plan_items(ORDER_LINEAR, step, residuals, header_bits);
        if plan.cost_bits < best.cost_bits {
            best = plan;
        }
    }
    best
}

#[inline]
fn linear_residual(value: u64, first: u64, step: u64, index: usize) -> u64 {
    value
        .wrapping_sub(first)
        .wrapping_sub(step.wrapping_mul(index as u64))
}

/// Samples whose value a sequence of this order keeps in its header.
#[inline]
fn head_count(order: u8) -> usize {
    match order {
        ORDER_VALUES => 0,
        ORDER_DELTAS_OF_DELTAS => 2,
        _ => 1,
    }
}

fn head_cost(head: Option<&u64>) -> u64 {
    head.map_or(0, |&value| var_cost_bits(zigzag_encode(value as i64)))
}

fn plan_items(
    order: u8,
    step: u64,
    items: impl Iterator<Item = u64> + Clone,
    header_bits: u64,
) -> SequencePlan {
    let mut item_count = 0u64;
    let mut min = i64::MAX;
    for item in items.clone() {
        item_count += 1;
        min = min.min(item as i64);
    }
    if item_count == 0 {
        return SequencePlan {
            order,
            step,
            min: 0,
            factor: 1,
            width: 0,
            cost_bits: header_bits,
        };
    }
    let min = min as u64;
    let mut factor = 0u64;
    for item in items.clone() {
        let offset = item.wrapping_sub(min);
        // Cheap test first: most items are multiples of the factor so far.
        if factor != 0 && factor.is_power_of_two() && offset & (factor - 1) == 0 {
            continue;
        }
        factor = gcd(factor, offset);
        if factor == 1 {
            break;
        }
    }
    let factor = factor.max(1);
    let divider = Divider::new(factor);
    // histogram[b]: items whose q + 1 has b significant bits, so that q fits
    // a width w without escape exactly when b ≤ w (all ones is the escape).
    // Two lanes, because most items land in the same bucket and one counter
    // would make every increment wait for the previous one.
    let mut lanes = [[0u64; 66]; 2];
    for (position, item) in items.enumerate() {
        let quotient = divider.divide(item.wrapping_sub(min));
        let bits = if quotient == u64::MAX {
            65
        } else {
            64 - (quotient + 1).leading_zeros()
        };
        lanes[position & 1][bits as usize] += 1;
    }
    let mut histogram = [0u64; 66];
    for (bucket, (even, odd)) in histogram.iter_mut().zip(lanes[0].iter().zip(&lanes[1])) {
        *bucket = even + odd;
    }
    let header_bits = header_bits
        + var_cost_bits(zigzag_encode(min as i64))
        + 1
        + if factor > 1 { var_cost_bits(factor) } else { 0 }
        + 7;
    // Width 0 is possible only when every quotient is 0.
    let (mut best_width, mut best_cost) = if histogram[1] == item_count {
        (0u32, 0u64)
    } else {
        (u32::MAX, u64::MAX)
    };
    // Escaped items cost their width, 6 length bits and about b more bits.
    let mut escaped_count = item_count - histogram[0] - histogram[1];
    let mut escaped_bits: u64 = (2..66).map(|bits| histogram[bits] * bits as u64).sum();
    for width in 1u32..=64 {
        let cost = item_count * u64::from(width) + escaped_count * 6 + escaped_bits;
        if cost < best_cost {
            best_cost = cost;
            best_width = width;
        }
        let now_fitting = histogram[width as usize + 1];
        escaped_count -= now_fitting;
        escaped_bits -= now_fitting * (u64::from(width) + 1);
    }
    SequencePlan {
        order,
        step,
        min,
        factor,
        width: best_width,
        cost_bits: header_bits + best_cost,
    }
}

/// Division by a chunk's common factor, which is nearly always 1 or a power
/// of two (pages, sectors): those skip the slow integer division.
#[derive(Clone, Copy, Debug)]
enum Divider {
    One,
    Shift(u32),
    Divide(u64),
}

impl Divider {
    fn new(factor: u64) -> Divider {
        if factor <= 1 {
            Divider::One
        } else if factor.is_power_of_two() {
            Divider::Shift(factor.trailing_zeros())
        } else {
            Divider::Divide(factor)
        }
    }

    #[inline]
    fn divide(self, value: u64) -> u64 {
        match self {
            Divider::One => value,
            Divider::Shift(shift) => value >> shift,
            Divider::Divide(factor) => value / factor,
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// Writes one integer sequence: its header, then one code per sample.
struct SequenceCoder {
    plan: SequencePlan,
    divider: Divider,
    /// Threshold at which a code escapes: 2^w − 1 (unused when w = 0).
    escape: u64,
}

impl SequenceCoder {
    fn new(plan: SequencePlan) -> SequenceCoder {
        let escape = if plan.width == 0 {
            0
        } else if plan.width == 64 {
            u64::MAX
        } else {
            (1u64 << plan.width) - 1
        };
        SequenceCoder {
            plan,
            divider: Divider::new(plan.factor),
            escape,
        }
    }

    fn write_header(&mut self, writer: &mut BitWriter, values: &[u64]) {
        let order = self.plan.order;
        writer.write(u64::from(order), 2);
        if order != ORDER_VALUES
            && let Some(&first) = values.first()
        {
            write_var(writer, zigzag_encode(first as i64));
        }
        if order == ORDER_DELTAS_OF_DELTAS && values.len() >= 2 {
            write_var(
                writer,
                zigzag_encode(values[1].wrapping_sub(values[0]) as i64),
            );
        }
        if values.len() > head_count(order) {
            if order == ORDER_LINEAR {
                write_var(writer, zigzag_encode(self.plan.step as i64));
            }
            write_var(writer, zigzag_encode(self.plan.min as i64));
            if self.plan.factor > 1 {
                writer.write_bit(true);
                write_var(writer, self.plan.factor);
            } else {
                writer.write_bit(false);
            }
            writer.write(u64::from(self.plan.width), 7);
        }
    }

    #[inline]
    fn write_code(&mut self, writer: &mut BitWriter, values: &[u64], index: usize) {
        if index < head_count(self.plan.order) || self.plan.width == 0 {
            return;
        }
        let item = match self.plan.order {
            ORDER_VALUES => values[index],
            ORDER_DELTAS => values[index].wrapping_sub(values[index - 1]),
            ORDER_DELTAS_OF_DELTAS => values[index]
                .wrapping_sub(values[index - 1])
                .wrapping_sub(values[index - 1].wrapping_sub(values[index - 2])),
            _ => linear_residual(values[index], values[0], self.plan.step, index),
        };
        let quotient = self.divider.divide(item.wrapping_sub(self.plan.min));
        if quotient >= self.escape {
            writer.write(self.escape, self.plan.width);
            write_var(writer, quotient - self.escape);
        } else {
            writer.write(quotient, self.plan.width);
        }
    }
}

/// Decoder state of one integer sequence.
#[derive(Clone, Debug)]
struct SequenceReader {
    order: u8,
    first: u64,
    first_difference: u64,
    step: u64,
    min: u64,
    factor: u64,
    width: u32,
    escape: u64,
    value: u64,
    difference: u64,
}

impl SequenceReader {
    fn read_header(reader: &mut BitReader<'_>, count: usize) -> Result<SequenceReader, ChunkError> {
        let order = reader.read_short(2) as u8;
        let mut sequence = SequenceReader {
            order,
            first: 0,
            first_difference: 0,
            step: 0,
            min: 0,
            factor: 1,
            width: 0,
            escape: 0,
            value: 0,
            difference: 0,
        };
        if order != ORDER_VALUES {
            sequence.first = zigzag_decode(read_var(reader)) as u64;
        }
        if order == ORDER_DELTAS_OF_DELTAS && count >= 2 {
            sequence.first_difference = zigzag_decode(read_var(reader)) as u64;
        }
        if count > head_count(order) {
            if order == ORDER_LINEAR {
                sequence.step = zigzag_decode(read_var(reader)) as u64;
            }
            sequence.min = zigzag_decode(read_var(reader)) as u64;
            if reader.read_bit() {
                sequence.factor = read_var(reader);
            }
            sequence.width = reader.read_short(7) as u32;
            if sequence.width > 64 {
                return Err(ChunkError::Corrupt("integer sequence width above 64"));
            }
            sequence.escape = match sequence.width {
                0 => 0,
                64 => u64::MAX,
                width => (1u64 << width) - 1,
            };
        }
        Ok(sequence)
    }

    #[inline]
    fn next(&mut self, reader: &mut BitReader<'_>, index: usize) -> u64 {
        if index < head_count(self.order) {
            if index == 0 {
                self.value = self.first;
            } else {
                self.difference = self.first_difference;
                self.value = self.value.wrapping_add(self.difference);
            }
            return self.value;
        }
        let mut quotient = reader.read(self.width);
        if self.width > 0 && quotient == self.escape {
            quotient = quotient.wrapping_add(read_var(reader));
        }
        let item = self.min.wrapping_add(quotient.wrapping_mul(self.factor));
        match self.order {
            ORDER_VALUES => self.value = item,
            ORDER_DELTAS => self.value = self.value.wrapping_add(item),
            ORDER_DELTAS_OF_DELTAS => {
                self.difference = self.difference.wrapping_add(item);
                self.value = self.value.wrapping_add(self.difference);
            }
            _ => {
                self.value = self
                    .first
                    .wrapping_add(self.step.wrapping_mul(index as u64))
                    .wrapping_add(item);
            }
        }
        self.value
    }
}

#[derive(Clone, Debug)]
enum ValueReader {
    Decimal {
        exponent: u32,
        sequence: SequenceReader,
    },
    Bits {
        sequence: SequenceReader,
    },
    Xor {
        last_value_bits: u64,
        window: XorWindow,
    },
}

/// Streaming decoder of a packed chunk's bit stream.
#[derive(Clone, Debug)]
pub(crate) struct PackedIter<'a> {
    reader: BitReader<'a>,
    count: usize,
    index: usize,
    timestamps: SequenceReader,
    values: ValueReader,
}

impl<'a> PackedIter<'a> {
    /// Reads the headers of a packed stream of `count` samples.
    pub(crate) fn new(
        encoding: u8,
        stream: &'a [u8],
        count: usize,
    ) -> Result<PackedIter<'a>, ChunkError> {
        if count > MAX_PACKED_SAMPLES {
            return Err(ChunkError::Corrupt("packed chunk claims too many samples"));
        }
        let mut reader = BitReader::new(stream);
        let timestamps = SequenceReader::read_header(&mut reader, count)?;
        let values = match encoding {
            ENCODING_PACKED_DECIMAL => {
                let exponent = reader.read_short(5) as u32;
                if exponent > MAX_DECIMAL_EXPONENT {
                    return Err(ChunkError::Corrupt("decimal exponent too large"));
                }
                ValueReader::Decimal {
                    exponent,
                    sequence: SequenceReader::read_header(&mut reader, count)?,
                }
            }
            ENCODING_PACKED_BITS => ValueReader::Bits {
                sequence: SequenceReader::read_header(&mut reader, count)?,
            },
            _ => ValueReader::Xor {
                last_value_bits: reader.read(64),
                window: XorWindow::new(),
            },
        };
        if reader.overrun() {
            return Err(ChunkError::Corrupt("packed header is truncated"));
        }
        Ok(PackedIter {
            reader,
            count,
            index: 0,
            timestamps,
            values,
        })
    }

    pub(crate) fn remaining(&self) -> usize {
        self.count - self.index
    }

    /// After the last sample: only zero padding may be left.
    pub(crate) fn check_end(&self) -> Result<(), ChunkError> {
        if self.reader.bits_remaining() >= 8 {
            return Err(ChunkError::Corrupt("trailing bytes after the last sample"));
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn next_sample(&mut self) -> Option<Result<Sample, ChunkError>> {
        if self.index >= self.count {
            return None;
        }
        let index = self.index;
        self.index += 1;
        let timestamp = self.timestamps.next(&mut self.reader, index) as i64;
        let value = match &mut self.values {
            ValueReader::Decimal { exponent, sequence } => {
                decimal_value(sequence.next(&mut self.reader, index) as i64, *exponent)
            }
            ValueReader::Bits { sequence } => {
                f64::from_bits(sequence.next(&mut self.reader, index))
            }
            ValueReader::Xor {
                last_value_bits,
                window,
            } => {
                if index > 0 {
                    match window.read(&mut self.reader) {
                        Ok(xor) => *last_value_bits ^= xor,
                        Err(error) => {
                            self.index = self.count;
                            return Some(Err(error));
                        }
                    }
                }
                f64::from_bits(*last_value_bits)
            }
        };
        if self.reader.overrun() {
            self.index = self.count;
            return Some(Err(ChunkError::Corrupt("packed stream ends early")));
        }
        Some(Ok(Sample {
            t: timestamp,
            v: value,
        }))
    }
}

/// How a sequence's coded item becomes its next value: one type per model,
/// so that the decoding loop of [`PackedIter::drain_into`] is compiled once
/// per pair of models with no branch on the model per sample.
trait SequenceModel {
    fn advance(sequence: &mut SequenceReader, item: u64, index: usize) -> u64;
}

struct ModelValues;
struct ModelDeltas;
struct ModelDeltasOfDeltas;
struct ModelLinear;

impl SequenceModel for ModelValues {
    #[inline(always)]
    fn advance(sequence: &mut SequenceReader, item: u64, _index: usize) -> u64 {
        sequence.value = item;
        item
    }
}

impl SequenceModel for ModelDeltas {
    #[inline(always)]
    fn advance(sequence: &mut SequenceReader, item: u64, _index: usize) -> u64 {
        sequence.value = sequence.value.wrapping_add(item);
        sequence.value
    }
}

impl SequenceModel for ModelDeltasOfDeltas {
    #[inline(always)]
    fn advance(sequence: &mut SequenceReader, item: u64, _index: usize) -> u64 {
        sequence.difference = sequence.difference.wrapping_add(item);
        sequence.value = sequence.value.wrapping_add(sequence.difference);
        sequence.value
    }
}

impl SequenceModel for ModelLinear {
    #[inline(always)]
    fn advance(sequence: &mut SequenceReader, item: u64, index: usize) -> u64 {
        sequence.value = sequence
            .first
            .wrapping_add(sequence.step.wrapping_mul(index as u64))
            .wrapping_add(item);
        sequence.value
    }
}

/// Binds the type alias `$model` to the [`SequenceModel`] of `$order`.
macro_rules! with_model {
    ($order:expr, $model:ident => $body:expr) => {
        match $order {
            ORDER_VALUES => {
                type $model = ModelValues;
                $body
            }
            ORDER_DELTAS => {
                type $model = ModelDeltas;
                $body
            }
            ORDER_DELTAS_OF_DELTAS => {
                type $model = ModelDeltasOfDeltas;
                $body
            }
            _ => {
                type $model = ModelLinear;
                $body
            }
        }
    };
}

impl SequenceReader {
    /// The next value past the header's samples, for a model known at
    /// compile time. Reads past the end yield zeros and set the reader's
    /// overrun flag, which the caller checks once at the end.
    #[inline(always)]
    fn next_coded<M: SequenceModel>(&mut self, reader: &mut BitReader<'_>, index: usize) -> u64 {
        let mut quotient = reader.read(self.width);
        if self.width > 0 && quotient == self.escape {
            quotient = quotient.wrapping_add(read_var(reader));
        }
        let item = self.min.wrapping_add(quotient.wrapping_mul(self.factor));
        M::advance(self, item, index)
    }
}

impl PackedIter<'_> {
    /// Appends every remaining sample to `out`: the same samples as calling
    /// [`PackedIter::next_sample`] until the end, several times faster. The
    /// few samples a sequence header holds go through `next_sample`; the
    /// rest through a loop specialised for the chunk's models. On error the
    /// samples appended so far are left in `out` (the caller truncates).
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Sample>) -> Result<(), ChunkError> {
        let header_samples = head_count(self.timestamps.order).max(match &self.values {
            ValueReader::Decimal { sequence, .. } | ValueReader::Bits { sequence } => {
                head_count(sequence.order)
            }
            ValueReader::Xor { .. } => 1,
        });
        out.reserve(self.remaining());
        while self.index < self.count.min(header_samples) {
            match self.next_sample() {
                Some(decoded) => out.push(decoded?),
                None => return Ok(()),
            }
        }
        let start = self.index;
        let count = self.count;
        self.index = count;
        let reader = &mut self.reader;
        let timestamps = &mut self.timestamps;
        let result = match &mut self.values {
            ValueReader::Decimal { exponent, sequence } => {
                let exponent = *exponent;
                with_model!(timestamps.order, T => with_model!(sequence.order, V => {
                    for index in start..count {
                        let t = timestamps.next_coded::<T>(reader, index) as i64;
                        let mantissa = sequence.next_coded::<V>(reader, index) as i64;
                        out.push(Sample { t, v: decimal_value(mantissa, exponent) });
                    }
                    Ok(())
                }))
            }
            ValueReader::Bits { sequence } => {
                with_model!(timestamps.order, T => with_model!(sequence.order, V => {
                    for index in start..count {
                        let t = timestamps.next_coded::<T>(reader, index) as i64;
                        let bits = sequence.next_coded::<V>(reader, index);
                        out.push(Sample { t, v: f64::from_bits(bits) });
                    }
                    Ok(())
                }))
            }
            ValueReader::Xor {
                last_value_bits,
                window,
            } => with_model!(timestamps.order, T => {
                let mut value_bits = *last_value_bits;
                let mut result = Ok(());
                for index in start..count {
                    let t = timestamps.next_coded::<T>(reader, index) as i64;
                    match window.read(reader) {
                        Ok(xor) => value_bits ^= xor,
                        Err(error) => {
                            result = Err(error);
                            break;
                        }
                    }
                    out.push(Sample { t, v: f64::from_bits(value_bits) });
                }
                *last_value_bits = value_bits;
                result
            }),
        };
        result?;
        if reader.overrun() {
            return Err(ChunkError::Corrupt("packed stream ends early"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_detection_finds_smallest_exponent() {
        assert_eq!(decimal_of(1234.56), Some((2, 123_456)));
        assert_eq!(decimal_of(2.3494e-05), Some((9, 23_494)));
        assert_eq!(decimal_of(-7.0), Some((0, -7)));
        assert_eq!(decimal_of(0.0), Some((0, 0)));
        assert_eq!(decimal_of(-0.0), None);
        assert_eq!(decimal_of(f64::NAN), None);
        assert_eq!(decimal_of(f64::INFINITY), None);
        // A float sum printed with 17 digits is not a short decimal.
        assert_eq!(decimal_of(1.1460000000000001), None);
        assert_eq!(decimal_of(1.0e300), None);
    }

    #[test]
    fn chunk_exponent_rescales_every_value() {
        let samples = [
            Sample { t: 1, v: 3.0 },
            Sample { t: 2, v: 3.5 },
            Sample { t: 3, v: 3.25 },
        ];
        let (exponent, integers) = decimal_integers(&samples).unwrap();
        assert_eq!(exponent, 2);
        assert_eq!(integers, vec![300, 350, 325]);
    }

    #[test]
    fn regular_timestamps_cost_no_bits_per_sample() {
        let timestamps: Vec<u64> = (0..120u64)
            .map(|index| 1_700_000_000_000 + index * 15_000)
            .collect();
        let plan = plan_sequence(&timestamps, true);
        assert_eq!(plan.order, 1);
        assert_eq!(plan.width, 0);
        assert_eq!(plan.min, 15_000);
    }

    #[test]
    fn one_outlier_escapes_instead_of_widening_every_code() {
        let mut timestamps: Vec<u64> = Vec::new();
        let mut timestamp = 1_000_000u64;
        for index in 0..120u64 {
            timestamp += if index == 60 {
                3_600_000
            } else {
                15_000 + index % 3
            };
            timestamps.push(timestamp);
        }
        let plan = plan_sequence(&timestamps, true);
        assert_eq!(plan.order, 1);
        assert_eq!(plan.width, 2);
    }

    #[test]
    fn jittered_timestamps_are_coded_as_residuals_from_a_line() {
        let jitter = [3i64, -3, 4, 2, -2, 4, -4, -1, -3, 0];
        let timestamps: Vec<u64> = (0..120i64)
            .map(|index| (1_700_000_000_000 + index * 15_000 + jitter[index as usize % 10]) as u64)
            .collect();
        let plan = plan_sequence(&timestamps, true);
        assert_eq!(plan.order, ORDER_LINEAR);
        assert_eq!(plan.step, 15_000);
        assert_eq!(plan.width, 4);
    }

    #[test]
    fn gcd_of_common_cases() {
        assert_eq!(gcd(0, 0), 0);
        assert_eq!(gcd(0, 4096), 4096);
        assert_eq!(gcd(8192, 12288), 4096);
        assert_eq!(gcd(17, 5), 1);
    }
}
