//! `vectorgate settings`: every variable with the value in effect (environment and flags),
//! secrets shown as `***`.

use vectorgate_composition::vars::VARIABLES;

use crate::context::Ctx;
use crate::Outcome;

pub fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let width = VARIABLES.iter().map(|v| v.name().len()).max().unwrap_or(0);
    for variable in VARIABLES {
        let value = variable
            .current(&ctx.settings)
            .unwrap_or_else(|| format!("(unset; default {})", variable.default_text()));
        println!("{:width$}  {value}", variable.name());
    }
    Ok(Outcome::Ok)
}
