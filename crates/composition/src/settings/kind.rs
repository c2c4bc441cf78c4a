//! How one variable's text becomes a typed value, and how what it accepts is described.

use std::time::Duration;

use secrecy::SecretString;
use vectorgate_adapter_milvus::{Consistency, MilvusUri, PartitionKey};
use vectorgate_adapter_pgvector::{DatabaseUrl, IndexKind, IndexPrecision};
use vectorgate_domain::{Dimension, GatewayError, Metric};

use super::{ReadFrom, VectorStoreMode};

/// The shape of a variable's values; it both checks a value and says what is accepted.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// An integer in `min..=max`.
    Int { min: i128, max: i128 },
    /// A number in `min..=max`.
    Number { min: f64, max: f64 },
    /// A duration in whole milliseconds, at least `min`.
    Millis { min: u64 },
    /// One of the names of an enum (its `FromStr` decides, its list is `accepted`).
    Choice { accepted: &'static str },
    /// Text that `check` accepts.
    Text {
        accepted: &'static str,
        check: fn(&str) -> bool,
    },
    /// Text the value type checks itself and explains when it refuses (URLs).
    Parsed { accepted: &'static str },
}

impl Kind {
    /// An integer range from an adapter's `limits` (so the range is written once).
    pub const fn int(min: u64, max: u64) -> Self {
        Kind::Int {
            min: min as i128,
            max: max as i128,
        }
    }

    /// What the variable accepts, as the README and errors say it.
    pub fn accepted(&self) -> String {
        match self {
            Kind::Int { min, max } => format!("an integer in {min}..={max}"),
            Kind::Number { min, max } => format!("a number in {min}..={max}"),
            Kind::Millis { min } => format!("milliseconds, an integer >= {min}"),
            Kind::Choice { accepted } | Kind::Text { accepted, .. } | Kind::Parsed { accepted } => {
                accepted.to_string()
            }
        }
    }
}

/// Why a text was refused: against the kind's description, or with the type's own words.
#[derive(Debug)]
pub enum Rejected {
    Plain,
    Explained(GatewayError),
}

/// A type a variable can hold.
pub trait SettingValue: Sized {
    fn parse(raw: &str, kind: &Kind) -> Result<Self, Rejected>;
    /// The value as a variable would be set to it (secrets: `***`).
    fn show(&self) -> String;
}

fn int_in(raw: &str, kind: &Kind) -> Result<i128, Rejected> {
    let Kind::Int { min, max } = kind else {
        return Err(Rejected::Plain);
    };
    raw.trim()
        .parse::<i128>()
        .ok()
        .filter(|v| (*min..=*max).contains(v))
        .ok_or(Rejected::Plain)
}

macro_rules! integer_values {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            fn parse(raw: &str, kind: &Kind) -> Result<Self, Rejected> {
                <$t>::try_from(int_in(raw, kind)?).map_err(|_| Rejected::Plain)
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
integer_values!(u16, u32, u64, usize);

impl SettingValue for Dimension {
    fn parse(raw: &str, kind: &Kind) -> Result<Self, Rejected> {
        let value = u32::parse(raw, kind)?;
        Dimension::new(value).map_err(|_| Rejected::Plain)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for f64 {
    fn parse(raw: &str, kind: &Kind) -> Result<Self, Rejected> {
        let Kind::Number { min, max } = kind else {
            return Err(Rejected::Plain);
        };
        raw.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| (*min..=*max).contains(v))
            .ok_or(Rejected::Plain)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for Duration {
    fn parse(raw: &str, kind: &Kind) -> Result<Self, Rejected> {
        let Kind::Millis { min } = kind else {
            return Err(Rejected::Plain);
        };
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|v| v >= min)
            .map(Duration::from_millis)
            .ok_or(Rejected::Plain)
    }
    fn show(&self) -> String {
        self.as_millis().to_string()
    }
}

impl SettingValue for bool {
    fn parse(raw: &str, _kind: &Kind) -> Result<Self, Rejected> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" => Ok(true),
            "off" | "false" | "no" | "0" => Ok(false),
            _ => Err(Rejected::Plain),
        }
    }
    fn show(&self) -> String {
        if *self { "on" } else { "off" }.to_string()
    }
}

impl SettingValue for String {
    fn parse(raw: &str, kind: &Kind) -> Result<Self, Rejected> {
        let value = raw.trim();
        match kind {
            Kind::Text { check, .. } if check(value) => Ok(value.to_string()),
            _ => Err(Rejected::Plain),
        }
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl SettingValue for SecretString {
    fn parse(raw: &str, kind: &Kind) -> Result<Self, Rejected> {
        // Secrets are taken as given (a password may start or end with a blank), except
        // for the line end a secret file usually has.
        let value = raw.trim_end_matches(['\n', '\r']);
        match kind {
            Kind::Text { check, .. } if check(value) => Ok(SecretString::from(value.to_string())),
            _ => Err(Rejected::Plain),
        }
    }
    fn show(&self) -> String {
        "***".to_string()
    }
}

impl SettingValue for DatabaseUrl {
    fn parse(raw: &str, _kind: &Kind) -> Result<Self, Rejected> {
        DatabaseUrl::parse(raw).map_err(Rejected::Explained)
    }
    fn show(&self) -> String {
        self.redacted().to_string()
    }
}

impl SettingValue for MilvusUri {
    fn parse(raw: &str, _kind: &Kind) -> Result<Self, Rejected> {
        MilvusUri::parse(raw).map_err(Rejected::Explained)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

macro_rules! choice_values {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            fn parse(raw: &str, _kind: &Kind) -> Result<Self, Rejected> {
                raw.trim().parse::<$t>().map_err(|_| Rejected::Plain)
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
choice_values!(
    VectorStoreMode,
    ReadFrom,
    Metric,
    Consistency,
    IndexKind,
    IndexPrecision,
    PartitionKey
);
