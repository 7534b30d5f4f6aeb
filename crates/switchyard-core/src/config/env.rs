//! `${VAR}` and `${VAR:-default}` interpolation of config strings from the environment.

/// Replaces every `${NAME}` / `${NAME:-fallback}` in `text` using `lookup`. `$${` escapes a
/// literal `${`. Returns the name of the first variable that is unset and has no fallback.
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after.find('}').ok_or_else(|| format!("unclosed \"${{\" in \"{text}\""))?;
        let inner = &after[..end];
        let (name, fallback) = match inner.split_once(":-") {
            Some((n, f)) => (n, Some(f)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("\"${{{inner}}}\" is not a valid variable reference"));
        }
        match (lookup(name).filter(|v| !v.is_empty()), fallback) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(f)) => out.push_str(f),
            (None, None) => return Err(name.to_owned()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-123".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_and_falls_back() {
        assert_eq!(interpolate("${KEY}", &env).unwrap(), "sk-123");
        assert_eq!(interpolate("Bearer ${KEY}!", &env).unwrap(), "Bearer sk-123!");
        assert_eq!(interpolate("${NOPE:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(interpolate("${EMPTY:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(interpolate("plain", &env).unwrap(), "plain");
        assert_eq!(interpolate("$${KEY}", &env).unwrap(), "${KEY}");
    }

    #[test]
    fn reports_the_missing_variable() {
        assert_eq!(interpolate("${NOPE}", &env).unwrap_err(), "NOPE");
        assert!(interpolate("${KEY", &env).unwrap_err().contains("unclosed"));
    }
}
