//! [`SettingsBuilder`]: variables set in code, parsed and checked exactly like the
//! environment.

use std::collections::BTreeMap;
use std::fmt;

use vectorgate_domain::GatewayError;

use super::var::{Var, Variable};
use super::Settings;

/// Builds [`Settings`] in code, for services that do not configure through the
/// environment:
///
/// ```
/// use vectorgate_composition::{vars, Settings, VectorStoreMode};
/// let settings = Settings::builder()
///     .set(&vars::EMBEDDING_DIM, 768)
///     .set(&vars::VECTOR_STORE_MODE, VectorStoreMode::Milvus)
///     .set(&vars::MILVUS_HOST, "milvus.internal")
///     .build()?;
/// assert_eq!(settings.dimension().get(), 768);
/// # Ok::<(), vectorgate_domain::GatewayError>(())
/// ```
#[derive(Clone, Default)]
pub struct SettingsBuilder {
    pub(super) values: BTreeMap<&'static str, (bool, String)>,
}

impl SettingsBuilder {
    /// Sets a variable as if the environment held `value`'s text (a later `set` wins).
    pub fn set<T>(mut self, variable: &'static Var<T>, value: impl fmt::Display) -> Self
    where
        Var<T>: Variable,
    {
        self.values
            .insert(variable.name(), (variable.is_secret(), value.to_string()));
        self
    }

    /// Parses and checks every value together with the defaults of the others.
    pub fn build(self) -> Result<Settings, GatewayError> {
        Settings::from_lookup(&|name| self.values.get(name).map(|(_, v)| v.clone()))
    }
}

impl fmt::Debug for SettingsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, (secret, value)) in &self.values {
            map.entry(name, if *secret { &"***" } else { value });
        }
        map.finish()
    }
}
