//! Conditional routing (`[[rules]]`): the first rule whose conditions all hold picks the alias
//! and/or the strategy for the request. Conditions: the requested alias, request headers, the
//! OpenAI `user` field and `metadata` entries.

use http::HeaderMap;

use super::plan::Features;
use crate::config::Rule;

/// The first rule `request` matches, with its index.
pub fn first_match<'c>(rules: &'c [Rule], requested: &str, headers: &HeaderMap, features: &mut Features<'_>) -> Option<(usize, &'c Rule)> {
    rules.iter().enumerate().find(|(_, r)| matches(r, requested, headers, features))
}

fn matches(rule: &Rule, requested: &str, headers: &HeaderMap, features: &mut Features<'_>) -> bool {
    if let Some(models) = &rule.models {
        if !models.iter().any(|m| m == requested) {
            return false;
        }
    }
    for (name, accepted) in &rule.headers {
        match headers.get(name.as_str()).and_then(|v| v.to_str().ok()) {
            Some(v) if accepted.matches(v.trim()) => {}
            _ => return false,
        }
    }
    if rule.user.is_none() && rule.metadata.is_empty() {
        return true;
    }
    let Some(f) = features.get() else { return false };
    if let Some(user) = &rule.user {
        if !f.user.as_deref().is_some_and(|u| user.matches(u)) {
            return false;
        }
    }
    rule.metadata.iter().all(|(k, accepted)| f.metadata.get(k).is_some_and(|v| accepted.matches(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OneOrMany, StrategyKind};
    use crate::wire::openai::ChatRequest;

    fn rule(f: impl FnOnce(&mut Rule)) -> Rule {
        let mut r = Rule {
            name: None,
            models: None,
            headers: Default::default(),
            user: None,
            metadata: Default::default(),
            alias: Some("cheap".into()),
            strategy: Some(StrategyKind::Cost),
        };
        f(&mut r);
        r
    }

    fn request(extra: &str) -> ChatRequest {
        ChatRequest::parse(format!(r#"{{"model":"gpt","messages":[]{extra}}}"#).into()).unwrap()
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = vec![
            rule(|r| {
                r.headers.insert("x-user-tier".into(), OneOrMany::One("free".into()));
            }),
            rule(|r| {
                r.models = Some(vec!["gpt".into()]);
                r.alias = Some("near".into());
            }),
        ];
        let req = request("");
        let mut headers = HeaderMap::new();
        assert_eq!(first_match(&rules, "gpt", &headers, &mut Features::new(Some(&req))).map(|m| m.0), Some(1));
        assert!(first_match(&rules, "other", &headers, &mut Features::new(Some(&req))).is_none());
        headers.insert("x-user-tier", "free".parse().unwrap());
        assert_eq!(first_match(&rules, "other", &headers, &mut Features::new(Some(&req))).map(|m| m.0), Some(0));
    }

    #[test]
    fn user_and_metadata() {
        let rules = vec![rule(|r| {
            r.user = Some(OneOrMany::Many(vec!["a".into(), "b".into()]));
            r.metadata.insert("region".into(), OneOrMany::One("eu".into()));
        })];
        let h = HeaderMap::new();
        let hit = request(r#","user":"b","metadata":{"region":"eu"}"#);
        let wrong_user = request(r#","user":"c","metadata":{"region":"eu"}"#);
        let no_meta = request(r#","user":"a""#);
        assert!(first_match(&rules, "gpt", &h, &mut Features::new(Some(&hit))).is_some());
        assert!(first_match(&rules, "gpt", &h, &mut Features::new(Some(&wrong_user))).is_none());
        assert!(first_match(&rules, "gpt", &h, &mut Features::new(Some(&no_meta))).is_none());
        assert!(first_match(&rules, "gpt", &h, &mut Features::new(None)).is_none(), "no chat body: user rules cannot match");
    }
}
