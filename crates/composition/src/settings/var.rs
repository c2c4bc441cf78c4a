//! One documented variable: its name, what it accepts, its default and where its value goes;
//! reading it from an environment (with `_FILE` for secrets and an optional alias).

use std::fmt;

use vectorgate_domain::GatewayError;

use super::kind::{Kind, Rejected, SettingValue};
use super::Settings;

/// What the README says about a variable's default.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DefaultDoc {
    /// The value the defaults hold (read back from [`Settings::defaults`]).
    FromDefaults,
    /// Described in words (derived or absent defaults).
    Text(&'static str),
    /// No default: the variable must be set; says what it is.
    Required(&'static str),
}

/// A setting read from the environment variable `name` into a `T`.
pub struct Var<T: 'static> {
    name: &'static str,
    doc: &'static str,
    kind: Kind,
    /// Extra rules the value must follow beyond its kind (checked with the other settings).
    note: Option<&'static str>,
    default: DefaultDoc,
    secret: bool,
    alias: Option<&'static str>,
    /// Variables that name the same thing another way: setting both is refused.
    conflicts: &'static [&'static str],
    get: fn(&Settings) -> Option<T>,
    set: fn(&mut Settings, T),
}

impl<T> fmt::Debug for Var<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl<T: SettingValue> Var<T> {
    pub(crate) const fn new(
        name: &'static str,
        kind: Kind,
        doc: &'static str,
        get: fn(&Settings) -> Option<T>,
        set: fn(&mut Settings, T),
    ) -> Self {
        Self {
            name,
            doc,
            kind,
            note: None,
            default: DefaultDoc::FromDefaults,
            secret: false,
            alias: None,
            conflicts: &[],
            get,
            set,
        }
    }

    /// Never printed; may also be read from the file named by `<NAME>_FILE`.
    pub(crate) const fn secret(self) -> Self {
        Self {
            secret: true,
            ..self
        }
    }

    pub(crate) const fn default_doc(self, default: DefaultDoc) -> Self {
        Self { default, ..self }
    }

    pub(crate) const fn note(self, note: &'static str) -> Self {
        Self {
            note: Some(note),
            ..self
        }
    }

    /// Refuses this variable together with any of `others` (another way to say the same).
    pub(crate) const fn conflicts(self, others: &'static [&'static str]) -> Self {
        Self {
            conflicts: others,
            ..self
        }
    }

    pub(crate) const fn alias(self, alias: &'static str) -> Self {
        Self {
            alias: Some(alias),
            ..self
        }
    }

    fn parse(&self, variable: &str, raw: &str) -> Result<T, GatewayError> {
        T::parse(raw, &self.kind).map_err(|rejected| match rejected {
            Rejected::Explained(err) => err,
            Rejected::Plain => GatewayError::configuration(
                variable,
                if self.secret { "***" } else { raw.trim() },
                self.accepted(),
            ),
        })
    }
}

/// What every variable offers, whatever its type: the table's rows.
pub trait Variable: Sync + fmt::Debug {
    fn name(&self) -> &'static str;
    /// What it sets, in a few words.
    fn doc(&self) -> &'static str;
    fn accepted(&self) -> String;
    /// The default as the README shows it.
    fn default_text(&self) -> String;
    fn is_secret(&self) -> bool;
    /// Another name read when this one is unset.
    fn alias(&self) -> Option<&'static str>;
    /// The value `settings` holds, secrets as `***` (a URL with its password as `***`);
    /// `None` when unset.
    fn current(&self, settings: &Settings) -> Option<String>;
    /// Reads the variable from `env` into `settings`; unset (or blank) leaves the default.
    fn read(
        &self,
        settings: &mut Settings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), GatewayError>;
}

impl<T: SettingValue> Variable for Var<T> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn doc(&self) -> &'static str {
        self.doc
    }

    fn accepted(&self) -> String {
        let mut text = self.kind.accepted();
        if let Some(note) = self.note {
            text = format!("{text} ({note})");
        }
        if !self.conflicts.is_empty() {
            text = format!("{text} (not together with {})", self.conflicts.join(" or "));
        }
        if self.secret {
            text.push_str("; secret, also read from the file named by ");
            text.push_str(self.name);
            text.push_str("_FILE");
        }
        text
    }

    fn default_text(&self) -> String {
        match self.default {
            DefaultDoc::FromDefaults => self
                .current(&Settings::defaults())
                .unwrap_or_else(|| "(none)".to_string()),
            DefaultDoc::Text(text) => text.to_string(),
            DefaultDoc::Required(_) => "(required)".to_string(),
        }
    }

    fn is_secret(&self) -> bool {
        self.secret
    }

    fn alias(&self) -> Option<&'static str> {
        self.alias
    }

    fn current(&self, settings: &Settings) -> Option<String> {
        // Every secret type shows itself redacted (see `SettingValue::show`).
        (self.get)(settings).map(|v| v.show())
    }

    fn read(
        &self,
        settings: &mut Settings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), GatewayError> {
        let present = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let mut raw = present(self.name).map(|v| (self.name.to_string(), v));
        if let Some((_, own)) = &raw {
            if let Some(other) = self.conflicts.iter().find(|o| present(o).is_some()) {
                return Err(GatewayError::configuration(
                    format!("{}/{other}", self.name),
                    if self.secret { "***" } else { own.trim() },
                    format!(
                        "either {} or {}, not both (both name the same thing)",
                        self.name,
                        self.conflicts.join("/")
                    ),
                ));
            }
        }
        if self.secret {
            let file_var = format!("{}_FILE", self.name);
            if let Some(path) = present(&file_var) {
                if raw.is_some() {
                    return Err(GatewayError::configuration(
                        &file_var,
                        path.trim(),
                        format!("either {} or {file_var}, not both", self.name),
                    ));
                }
                let text = std::fs::read_to_string(path.trim()).map_err(|e| {
                    GatewayError::configuration(
                        &file_var,
                        path.trim(),
                        format!("a readable file holding {} ({e})", self.name),
                    )
                })?;
                raw = Some((file_var, text));
            }
        }
        if let Some(alias) = self.alias {
            if let Some(alias_raw) = present(alias) {
                let alias_value = self.parse(alias, &alias_raw)?;
                match &raw {
                    None => raw = Some((alias.to_string(), alias_raw)),
                    Some((name, own)) => {
                        let own_value = self.parse(name, own)?;
                        if own_value.show() != alias_value.show() {
                            return Err(GatewayError::configuration(
                                alias,
                                alias_raw.trim(),
                                format!(
                                    "the same value as {} ({}) or unset: it is an alias",
                                    self.name,
                                    own_value.show()
                                ),
                            ));
                        }
                    }
                }
            }
        }
        match raw {
            Some((name, value)) => {
                let parsed = self.parse(&name, &value)?;
                (self.set)(settings, parsed);
                Ok(())
            }
            None => match self.default {
                DefaultDoc::Required(what) => Err(GatewayError::configuration(
                    self.name,
                    "",
                    format!("{} (required: {what})", self.accepted()),
                )),
                _ => Ok(()),
            },
        }
    }
}
