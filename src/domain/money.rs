//! Exact money: amounts are integer minor units (cents for EUR) of the fund's
//! one currency. Decimal text from a client is converted here, exactly or not
//! at all: too many decimals, a sign where none is allowed or an absurd
//! magnitude is refused with the figures, never rounded.
//!
//! This module never uses floating point.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest amount a single command may carry, in major units (one
/// billion of the currency). Anything larger is taken to be a typing error.
pub const AMOUNT_MAJOR_MAX: i64 = 1_000_000_000;

/// The largest total a fund may ever have pledged, in major units. Every
/// other figure of the ledger is bounded by the pledged total, so this bound
/// keeps all sums far inside `i64` minor units.
pub const FUND_PLEDGED_MAJOR_MAX: i64 = 1_000_000_000_000;

/// The most minor units a currency may have (4 covers every ISO 4217 currency).
pub const MINOR_UNITS_MAX: u8 = 4;

/// An amount in minor units of the fund's currency. Never negative: not
/// even as stored, since decoding one refuses a negative value
/// ([`NegativeAmount`]) instead of handing the fold an amount that breaks
/// its sums. Stored as its `i64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64")]
pub struct Amount(i64);

/// Why stored bytes are not an [`Amount`]: `decide` never records a
/// negative one, so such bytes were written by something else.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a stored amount of {0} minor units is negative; amounts are never negative")]
pub struct NegativeAmount(pub i64);

impl TryFrom<i64> for Amount {
    type Error = NegativeAmount;

    fn try_from(minor: i64) -> Result<Amount, NegativeAmount> {
        Amount::from_minor(minor).ok_or(NegativeAmount(minor))
    }
}

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// An amount from minor units; `None` when negative.
    pub fn from_minor(minor: i64) -> Option<Amount> {
        (minor >= 0).then_some(Amount(minor))
    }

    pub fn minor(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Sum of two amounts. Overflow is impossible for amounts within the
    /// fund's bounds, so it is an assertion, not an error.
    pub fn plus(self, other: Amount) -> Amount {
        Amount(self.0.checked_add(other.0).expect("amount overflow: bounds were not enforced"))
    }

    /// Difference of two amounts; the caller has established `self >= other`.
    pub fn minus(self, other: Amount) -> Amount {
        assert!(self.0 >= other.0, "amount underflow: {} - {}", self.0, other.0);
        Amount(self.0 - other.0)
    }

    /// `self - other`, or zero when `other` is larger.
    pub fn saturating_minus(self, other: Amount) -> Amount {
        Amount((self.0 - other.0).max(0))
    }
}

impl std::iter::Sum for Amount {
    fn sum<I: Iterator<Item = Amount>>(iter: I) -> Amount {
        iter.fold(Amount::ZERO, Amount::plus)
    }
}

/// A signed figure in minor units, for views in which a figure may
/// legitimately fall below zero: the business-date view
/// ([`super::dated`]) counts every event by its own business date, so money
/// paid with a value date before the award's decision date shows as
/// negative open commitments on dates in between. Live figures never need
/// it: there every figure is an [`Amount`].
///
/// It is an `i128` so that no valid log can overflow it: fewer than 2^64
/// events, each moving less than 2^63 minor units, sum to less than 2^127.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SignedAmount(i128);

impl SignedAmount {
    pub const ZERO: SignedAmount = SignedAmount(0);

    pub fn minor(self) -> i128 {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// `self + other`; `other` an [`Amount`] or another signed figure.
    pub fn plus(self, other: impl Into<SignedAmount>) -> SignedAmount {
        SignedAmount(self.0 + other.into().0)
    }

    /// `self - other`; `other` an [`Amount`] or another signed figure.
    pub fn minus(self, other: impl Into<SignedAmount>) -> SignedAmount {
        SignedAmount(self.0 - other.into().0)
    }
}

impl From<Amount> for SignedAmount {
    fn from(amount: Amount) -> SignedAmount {
        SignedAmount(i128::from(amount.0))
    }
}

/// The fund's currency: an ISO 4217 code and its number of minor units.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Currency {
    pub code: String,
    pub minor_units: u8,
}

impl Currency {
    pub fn eur() -> Currency {
        Currency { code: "EUR".into(), minor_units: 2 }
    }

    /// ISO 4217's "XXX", no currency involved: what events before the fund
    /// is opened (access granted by `init`) are written with. They carry no
    /// amount, so nothing is ever formatted in it.
    pub fn none() -> Currency {
        Currency { code: "XXX".into(), minor_units: 0 }
    }

    /// Validates a currency as a fund would be opened with it.
    pub fn new(code: &str, minor_units: u8) -> Result<Currency, String> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!("currency code must be three capital letters (ISO 4217), got {code:?}"));
        }
        if minor_units > MINOR_UNITS_MAX {
            return Err(format!("a currency has at most {MINOR_UNITS_MAX} minor units, got {minor_units}"));
        }
        Ok(Currency { code: code.into(), minor_units })
    }

    fn scale(&self) -> i64 {
        10i64.pow(u32::from(self.minor_units))
    }

    /// The amount as exact decimal text with all minor digits: `12500.00`.
    /// Written digit by digit (every answer in full formats each amount
    /// and share it carries): the same text as a `Decimal` of that scale
    /// writes, in a fraction of its time.
    pub fn plain(&self, amount: Amount) -> String {
        let minor_units = usize::from(self.minor_units);
        let mut rest = amount.minor().unsigned_abs();
        // An i64's 19 digits, the zeros after the point, and the point.
        let mut text = vec![0u8; 21 + minor_units];
        let mut at = text.len();
        let mut digits = 0;
        while rest > 0 || digits <= minor_units {
            if digits == minor_units && minor_units > 0 {
                at -= 1;
                text[at] = b'.';
            }
            at -= 1;
            text[at] = b'0' + u8::try_from(rest % 10).expect("a digit");
            rest /= 10;
            digits += 1;
        }
        text.drain(..at);
        String::from_utf8(text).expect("ASCII digits and a point")
    }

    /// A signed figure as exact decimal text with all minor digits:
    /// `-12500.00`. Written out digit by digit, because an `i128` can hold
    /// more digits than a `Decimal`.
    pub fn plain_signed(&self, amount: SignedAmount) -> String {
        let digits = amount.0.unsigned_abs().to_string();
        let minor_units = usize::from(self.minor_units);
        let digits = format!("{digits:0>width$}", width = minor_units + 1);
        let (int, frac) = digits.split_at(digits.len() - minor_units);
        let sign = if amount.0 < 0 { "-" } else { "" };
        if frac.is_empty() {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        }
    }

    /// The amount for people: `EUR 12,500.00`.
    pub fn display(&self, amount: Amount) -> String {
        let plain = self.plain(amount);
        let (int, frac) = match plain.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (plain.as_str(), None),
        };
        let mut grouped = String::new();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        match frac {
            Some(f) => format!("{} {grouped}.{f}", self.code),
            None => format!("{} {grouped}", self.code),
        }
    }

    /// Converts a client's decimal into minor units of this currency,
    /// exactly. `allow_zero` is for figures such as a final settlement that
    /// may be zero; every other amount must be positive.
    pub fn to_amount(&self, input: &MoneyInput, allow_zero: bool) -> Result<Amount, AmountError> {
        if input.currency != self.code {
            return Err(AmountError::CurrencyMismatch { given: input.currency.clone(), expected: self.code.clone() });
        }
        let value = input.value;
        if value.is_sign_negative() && !value.is_zero() || (!allow_zero && value.is_zero()) {
            return Err(AmountError::NotPositive { value: value.to_string(), zero_allowed: allow_zero });
        }
        if value.normalize().scale() > u32::from(self.minor_units) {
            return Err(AmountError::TooPrecise {
                value: value.to_string(),
                currency: self.code.clone(),
                minor_units: self.minor_units,
            });
        }
        if value > Decimal::from(AMOUNT_MAJOR_MAX) {
            return Err(AmountError::TooLarge {
                value: value.to_string(),
                max: self.display(Amount(AMOUNT_MAJOR_MAX * self.scale())),
            });
        }
        let minor = (value * Decimal::from(self.scale())).normalize();
        debug_assert_eq!(minor.scale(), 0);
        let minor: i64 = minor.mantissa().try_into().expect("bounded above");
        Ok(Amount(minor))
    }

    /// The fund-wide pledge bound in minor units of this currency.
    pub fn fund_pledged_max(&self) -> Amount {
        Amount(FUND_PLEDGED_MAJOR_MAX * self.scale())
    }
}

/// An amount as a client sent it: exact decimal plus currency code. Parsing
/// the text is the wire's job; fitting it to the fund's currency is ours.
///
/// Deserializing goes through [`MoneyInput::parse`] as well: `Decimal`'s own
/// text parser rounds beyond 28 decimals (`"1.00000000000000000000000000001"`
/// would become 1.00), and an amount must be taken exactly or refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MoneyInputText")]
pub struct MoneyInput {
    #[serde(serialize_with = "rust_decimal::serde::str::serialize")]
    pub value: Decimal,
    pub currency: String,
}

/// The serialized shape of a [`MoneyInput`], before its text is checked.
#[derive(Deserialize)]
struct MoneyInputText {
    value: String,
    currency: String,
}

impl TryFrom<MoneyInputText> for MoneyInput {
    type Error = AmountError;

    fn try_from(text: MoneyInputText) -> Result<MoneyInput, AmountError> {
        MoneyInput::parse(&text.value, &text.currency)
    }
}

impl MoneyInput {
    /// Parses decimal text such as `12500.00`. Exponents (`1e30`), signs
    /// other than `-`, separators and anything else are refused.
    pub fn parse(value: &str, currency: &str) -> Result<MoneyInput, AmountError> {
        let text = value.trim();
        let well_formed = !text.is_empty()
            && text.len() <= 40
            && text.strip_prefix('-').unwrap_or(text).split_once('.').map_or_else(
                || is_digits(text.strip_prefix('-').unwrap_or(text)),
                |(int, frac)| is_digits(int) && is_digits(frac),
            );
        if !well_formed {
            return Err(AmountError::Malformed { value: value.into() });
        }
        let value = Decimal::from_str_exact(text).map_err(|_| {
            // More digits than an exact decimal holds: either the whole part
            // is absurdly large, or the fraction is absurdly long.
            let whole_digits =
                text.trim_start_matches('-').split('.').next().map_or(0, |w| w.trim_start_matches('0').len());
            if whole_digits > 12 {
                AmountError::TooLarge {
                    value: text.into(),
                    max: format!("{currency} {}", group_thousands(AMOUNT_MAJOR_MAX)),
                }
            } else {
                AmountError::TooManyDigits { value: text.into() }
            }
        })?;
        Ok(MoneyInput { value, currency: currency.into() })
    }
}

fn group_thousands(n: i64) -> String {
    Currency { code: String::new(), minor_units: 0 }.display(Amount(n)).trim_start().to_owned()
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Why an amount from a client cannot be taken. These are malformed input,
/// not business rules: the API answers them with `INVALID_ARGUMENT`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("{value:?} is not a decimal number such as \"12500.00\"")]
    Malformed { value: String },
    #[error("{value} must be {}", if *zero_allowed { "zero or more" } else { "greater than zero" })]
    NotPositive { value: String, zero_allowed: bool },
    #[error("{value} has more decimals than {currency} has ({minor_units}); it is refused, not rounded")]
    TooPrecise { value: String, currency: String, minor_units: u8 },
    #[error("{value} has more digits than an exact amount can carry (28); it is refused, not rounded")]
    TooManyDigits { value: String },
    #[error("{value} exceeds the largest amount one command may carry, {max}")]
    TooLarge { value: String, max: String },
    #[error("is in {given} but this fund keeps its books in {expected}")]
    CurrencyMismatch { given: String, expected: String },
}

impl fmt::Display for Amount {
    /// Minor units; use [`Currency::display`] for people.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} minor units", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plain` writes what a `Decimal` of the currency's scale writes, for
    /// every number of minor units and amounts from zero to `i64::MAX`.
    #[test]
    fn plain_text_is_the_decimal_text() {
        let mut amounts: Vec<i64> = (0..=1_200).collect();
        for power in 0..19 {
            let p = 10_i64.pow(power);
            amounts.extend([p - 1, p, p + 1, 5 * p, 9 * p + 7]);
        }
        amounts.extend([i64::MAX - 1, i64::MAX, 1_250_000, 208_351_217]);
        for minor_units in 0..=MINOR_UNITS_MAX {
            let currency = Currency { code: "EUR".into(), minor_units };
            for &minor in &amounts {
                let amount = Amount::from_minor(minor).expect("not negative");
                let expected = Decimal::new(minor, u32::from(minor_units)).to_string();
                assert_eq!(currency.plain(amount), expected, "{minor} with {minor_units} minor units");
            }
        }
        assert_eq!(Currency::eur().plain(Amount::from_minor(5).unwrap()), "0.05");
        assert_eq!(Currency::eur().plain(Amount::ZERO), "0.00");
        assert_eq!(Currency::none().plain(Amount::from_minor(120).unwrap()), "120");
        // Whatever a stored currency says, never out of the buffer.
        let odd = Currency { code: "XXX".into(), minor_units: u8::MAX };
        let text = odd.plain(Amount::from_minor(i64::MAX).unwrap());
        assert_eq!(text.len(), 2 + usize::from(u8::MAX), "{text}");
        assert!(text.starts_with("0.") && text.ends_with(&i64::MAX.to_string()), "{text}");
    }
}
