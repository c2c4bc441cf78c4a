//! The README's settings table, generated from the declarations (`cargo xtask docs`
//! writes it; a test fails when the README differs).

use super::table::VARIABLES;

/// The markdown table of every variable: name, default, accepted values, what it sets.
pub fn markdown_table() -> String {
    let mut out =
        String::from("| variable | default | accepted | what it sets |\n|---|---|---|---|\n");
    for variable in VARIABLES {
        let name = match variable.alias() {
            Some(alias) => format!("`{}` (alias `{alias}`)", variable.name()),
            None => format!("`{}`", variable.name()),
        };
        out.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            cell(&variable.default_text()),
            cell(&variable.accepted()),
            cell(variable.doc()),
        ));
    }
    out
}

/// A table cell: `|` escaped, so that accepted values such as regexes keep the table intact.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
