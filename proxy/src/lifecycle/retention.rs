//! Retention policies: which tags of a repository no keep rule keeps, and which untagged
//! manifests a rule keeps from the garbage collector. A pure function of the policy and what
//! the catalogue says about the repository (tags with their push and pull times), so that a
//! preview is exactly what a run then does, and the whole table of conditions is tested here.
//!
//! Semantics (`shared/ANCHORS.md`: Zot's OR-only rules could not say "keep the 3 latest, but
//! only for 100 h", zot#1866):
//! - rules combine with OR: a tag is kept when any rule keeps it;
//! - inside a rule, conditions combine with AND: a tag must match the rule's patterns (any
//!   glob or regex given; all tags when none) and none of its exclusions, and satisfy each
//!   time condition given (`pushed_within`, `pulled_within`); among the tags that pass, the
//!   count conditions keep the N most recently pushed (`newest_pushed`) and the N most
//!   recently pulled (`newest_pulled`), both when both are given. Counts are per repository.
//! - immutable tags are always kept;
//! - an `untagged` rule keeps manifests no tag points at (patterns do not apply), with the
//!   same conditions over their push and pull times; without such a rule, untagged
//!   manifests are left to the garbage collector's default (collected after the grace
//!   period).

use std::collections::BTreeSet;

use regex::Regex;
use shoal_raft::{ImmutableTags, RetentionPolicy};
use wildmatch::WildMatch;

/// A tag as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagInfo {
    pub tag: String,
    pub digest: String,
    pub pushed_at: i64,
    pub pulled_at: Option<i64>,
}

/// A manifest no tag points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Untagged {
    pub digest: String,
    pub pushed_at: i64,
    pub pulled_at: Option<i64>,
}

/// What a policy decides for one repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// `(tag, digest)` of every tag no rule keeps, by tag.
    pub delete: Vec<(String, String)>,
    /// Untagged manifests an `untagged` rule keeps.
    pub keep_untagged: BTreeSet<String>,
}

struct Rule {
    untagged: bool,
    tags: Vec<WildMatch>,
    tags_regex: Vec<Regex>,
    exclude: Vec<WildMatch>,
    exclude_regex: Vec<Regex>,
    newest_pushed: Option<u32>,
    newest_pulled: Option<u32>,
    pushed_within: Option<u64>,
    pulled_within: Option<u64>,
}

/// A policy with its patterns compiled.
pub struct Compiled {
    repositories: Vec<WildMatch>,
    rules: Vec<Rule>,
}

/// The most patterns of each kind a rule may have, and rules a policy may have: a policy is
/// evaluated for every repository of its namespace, so its size is bounded.
pub const MAX_RULES: usize = 32;
pub const MAX_PATTERNS: usize = 32;
const MAX_PATTERN_LEN: usize = 128;

fn regex(p: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("{p:?} is not a regular expression: {e}"))
}

fn checked<'a>(what: &str, list: &'a [String]) -> Result<&'a [String], String> {
    if list.len() > MAX_PATTERNS {
        return Err(format!("at most {MAX_PATTERNS} {what} per rule"));
    }
    if let Some(p) = list.iter().find(|p| {
        p.is_empty() || p.chars().count() > MAX_PATTERN_LEN || p.chars().any(char::is_control)
    }) {
        return Err(format!(
            "{what} {p:?} must be 1 to {MAX_PATTERN_LEN} printable characters"
        ));
    }
    Ok(list)
}

impl Compiled {
    /// Compiles `p`, or says what is wrong with it (for a 400 that names it).
    pub fn new(p: &RetentionPolicy) -> Result<Compiled, String> {
        if p.rules.is_empty() {
            return Err(
                "a policy needs at least one keep rule (delete the policy to keep everything)"
                    .into(),
            );
        }
        if p.rules.len() > MAX_RULES {
            return Err(format!("at most {MAX_RULES} rules"));
        }
        let globs = |what, l: &[String]| -> Result<Vec<WildMatch>, String> {
            Ok(checked(what, l)?
                .iter()
                .map(|g| WildMatch::new(g))
                .collect())
        };
        let regexes = |what, l: &[String]| -> Result<Vec<Regex>, String> {
            checked(what, l)?.iter().map(|r| regex(r)).collect()
        };
        let mut rules = Vec::new();
        for (i, r) in p.rules.iter().enumerate() {
            let rule = Rule {
                untagged: r.untagged,
                tags: globs("tags", &r.tags)?,
                tags_regex: regexes("tags_regex", &r.tags_regex)?,
                exclude: globs("exclude", &r.exclude)?,
                exclude_regex: regexes("exclude_regex", &r.exclude_regex)?,
                newest_pushed: r.newest_pushed,
                newest_pulled: r.newest_pulled,
                pushed_within: r.pushed_within,
                pulled_within: r.pulled_within,
            };
            let patterns = rule.tags.len()
                + rule.tags_regex.len()
                + rule.exclude.len()
                + rule.exclude_regex.len();
            if rule.untagged && patterns > 0 {
                return Err(format!("rule {i}: an untagged rule takes no tag patterns"));
            }
            if [rule.newest_pushed, rule.newest_pulled].contains(&Some(0)) {
                return Err(format!(
                    "rule {i}: a count of 0 keeps nothing; leave it out"
                ));
            }
            rules.push(rule);
        }
        Ok(Compiled {
            repositories: globs("repositories", &p.repositories)?,
            rules,
        })
    }

    /// Whether the policy applies to repository `repo` (all of its namespace's when it names
    /// no repositories).
    pub fn covers(&self, repo: &str) -> bool {
        self.repositories.is_empty() || self.repositories.iter().any(|g| g.matches(repo))
    }

    /// Whether any rule keeps untagged manifests (otherwise the collector's default holds).
    pub fn has_untagged_rules(&self) -> bool {
        self.rules.iter().any(|r| r.untagged)
    }

    /// The decision for one repository's tags and untagged manifests at `now`.
    pub fn decide(
        &self,
        tags: &[TagInfo],
        untagged: &[Untagged],
        immutable: &ImmutableTags,
        now: i64,
    ) -> Decision {
        let mut kept = vec![false; tags.len()];
        let mut keep_untagged = BTreeSet::new();
        for rule in &self.rules {
            if rule.untagged {
                let items: Vec<Item> = untagged
                    .iter()
                    .map(|u| Item {
                        name: &u.digest,
                        pushed_at: u.pushed_at,
                        pulled_at: u.pulled_at,
                    })
                    .collect();
                for i in rule.keeps(&items, now, false) {
                    keep_untagged.insert(untagged[i].digest.clone());
                }
            } else {
                let items: Vec<Item> = tags
                    .iter()
                    .map(|t| Item {
                        name: &t.tag,
                        pushed_at: t.pushed_at,
                        pulled_at: t.pulled_at,
                    })
                    .collect();
                for i in rule.keeps(&items, now, true) {
                    kept[i] = true;
                }
            }
        }
        let mut delete: Vec<(String, String)> = tags
            .iter()
            .zip(kept)
            .filter(|(t, kept)| !kept && immutable.rule_for(&t.tag).is_none())
            .map(|(t, _)| (t.tag.clone(), t.digest.clone()))
            .collect();
        delete.sort();
        Decision {
            delete,
            keep_untagged,
        }
    }
}

struct Item<'a> {
    name: &'a str,
    pushed_at: i64,
    pulled_at: Option<i64>,
}

impl Rule {
    fn selects(&self, name: &str, by_name: bool) -> bool {
        if !by_name {
            return true;
        }
        let any_pattern = !self.tags.is_empty() || !self.tags_regex.is_empty();
        let included = !any_pattern
            || self.tags.iter().any(|g| g.matches(name))
            || self.tags_regex.iter().any(|r| r.is_match(name));
        let excluded = self.exclude.iter().any(|g| g.matches(name))
            || self.exclude_regex.iter().any(|r| r.is_match(name));
        included && !excluded
    }

    /// The indexes of `items` this rule keeps.
    fn keeps(&self, items: &[Item], now: i64, by_name: bool) -> BTreeSet<usize> {
        let within =
            |t: i64, secs: u64| now.saturating_sub(t) <= i64::try_from(secs).unwrap_or(i64::MAX);
        let passing: Vec<usize> = (0..items.len())
            .filter(|&i| {
                let it = &items[i];
                self.selects(it.name, by_name)
                    && self.pushed_within.is_none_or(|d| within(it.pushed_at, d))
                    && self
                        .pulled_within
                        .is_none_or(|d| it.pulled_at.is_some_and(|p| within(p, d)))
            })
            .collect();
        let mut kept: BTreeSet<usize> = passing.iter().copied().collect();
        if let Some(n) = self.newest_pushed {
            let mut order = passing.clone();
            // Newest first; a tie goes by name, so every node decides alike.
            order.sort_by(|&a, &b| {
                (items[b].pushed_at, items[a].name).cmp(&(items[a].pushed_at, items[b].name))
            });
            let top: BTreeSet<usize> = order.into_iter().take(n as usize).collect();
            kept.retain(|i| top.contains(i));
        }
        if let Some(n) = self.newest_pulled {
            let mut order: Vec<usize> = passing
                .iter()
                .copied()
                .filter(|&i| items[i].pulled_at.is_some())
                .collect();
            order.sort_by(|&a, &b| {
                (items[b].pulled_at, items[a].name).cmp(&(items[a].pulled_at, items[b].name))
            });
            let top: BTreeSet<usize> = order.into_iter().take(n as usize).collect();
            kept.retain(|i| top.contains(i));
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_raft::KeepRule;

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_000 * DAY;

    /// Tags `(name, pushed days ago, pulled days ago)`.
    fn tags(list: &[(&str, i64, Option<i64>)]) -> Vec<TagInfo> {
        list.iter()
            .map(|(t, pushed, pulled)| TagInfo {
                tag: t.to_string(),
                digest: format!("sha256:{t}"),
                pushed_at: NOW - pushed * DAY,
                pulled_at: pulled.map(|p| NOW - p * DAY),
            })
            .collect()
    }

    fn rule() -> KeepRule {
        KeepRule::default()
    }

    /// Checks that `rules` keep exactly `kept` of `list` (everything else deleted).
    fn check(rules: Vec<KeepRule>, list: &[(&str, i64, Option<i64>)], kept: &[&str]) {
        let policy = RetentionPolicy {
            repositories: vec![],
            rules,
        };
        let d = Compiled::new(&policy).unwrap().decide(
            &tags(list),
            &[],
            &ImmutableTags::default(),
            NOW,
        );
        let mut expected: Vec<&str> = list
            .iter()
            .map(|(t, _, _)| *t)
            .filter(|t| !kept.contains(t))
            .collect();
        expected.sort();
        let deleted: Vec<&str> = d.delete.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(deleted, expected, "{policy:?}");
    }

    const TAGS: &[(&str, i64, Option<i64>)] = &[
        ("v1.0", 300, Some(1)),
        ("v1.1", 200, None),
        ("v2.0", 10, Some(40)),
        ("a1b2c3d", 1, Some(0)),
        ("e4f5a6b", 5, None),
        ("0aa1bb2", 50, Some(20)),
        ("latest", 1, Some(0)),
        ("v2.1-rc1", 2, None),
    ];

    #[test]
    fn patterns_exclusions_and_regexes() {
        let v = KeepRule {
            tags: vec!["v*".into()],
            ..rule()
        };
        check(vec![v.clone()], TAGS, &["v1.0", "v1.1", "v2.0", "v2.1-rc1"]);
        let v_no_rc = KeepRule {
            exclude: vec!["*-rc*".into()],
            ..v.clone()
        };
        check(vec![v_no_rc], TAGS, &["v1.0", "v1.1", "v2.0"]);
        let sha = KeepRule {
            tags_regex: vec!["^[0-9a-f]{7}$".into()],
            ..rule()
        };
        check(vec![sha.clone()], TAGS, &["a1b2c3d", "e4f5a6b", "0aa1bb2"]);
        let sha_not_0 = KeepRule {
            exclude_regex: vec!["^0".into()],
            ..sha
        };
        check(vec![sha_not_0], TAGS, &["a1b2c3d", "e4f5a6b"]);
        // No pattern: every tag is selected.
        check(
            vec![rule()],
            TAGS,
            &TAGS.iter().map(|t| t.0).collect::<Vec<_>>(),
        );
    }

    #[test]
    fn each_condition() {
        let newest3 = KeepRule {
            newest_pushed: Some(3),
            ..rule()
        };
        // latest and a1b2c3d tie at 1 day: both kept, by name the tie is stable.
        check(vec![newest3], TAGS, &["a1b2c3d", "latest", "v2.1-rc1"]);
        let pulled2 = KeepRule {
            newest_pulled: Some(2),
            ..rule()
        };
        check(vec![pulled2], TAGS, &["a1b2c3d", "latest"]);
        let pushed_week = KeepRule {
            pushed_within: Some(7 * DAY as u64),
            ..rule()
        };
        check(
            vec![pushed_week],
            TAGS,
            &["a1b2c3d", "e4f5a6b", "latest", "v2.1-rc1"],
        );
        let pulled_month = KeepRule {
            pulled_within: Some(30 * DAY as u64),
            ..rule()
        };
        check(
            vec![pulled_month],
            TAGS,
            &["v1.0", "a1b2c3d", "0aa1bb2", "latest"],
        );
    }

    /// What Zot's rules cannot say (zot#1866): AND inside a rule, OR across rules.
    #[test]
    fn conditions_and_within_a_rule_and_or_across_rules() {
        // "Keep the 2 newest commit tags, but only those pushed within 7 days."
        let recent_shas = KeepRule {
            tags_regex: vec!["^[0-9a-f]{7}$".into()],
            newest_pushed: Some(2),
            pushed_within: Some(7 * DAY as u64),
            ..rule()
        };
        check(vec![recent_shas.clone()], TAGS, &["a1b2c3d", "e4f5a6b"]);
        // "…or anything pulled within 30 days, or any release."
        let releases = KeepRule {
            tags: vec!["v*".into()],
            exclude: vec!["*-rc*".into()],
            ..rule()
        };
        let pulled = KeepRule {
            pulled_within: Some(30 * DAY as u64),
            ..rule()
        };
        check(
            vec![recent_shas, releases, pulled],
            TAGS,
            &[
                "a1b2c3d", "e4f5a6b", "v1.0", "v1.1", "v2.0", "0aa1bb2", "latest",
            ],
        );
        // Counts among what passes the other conditions: 1 newest release pulled in 60 days.
        let newest_pulled_release = KeepRule {
            tags: vec!["v*".into()],
            pulled_within: Some(60 * DAY as u64),
            newest_pushed: Some(1),
            ..rule()
        };
        check(vec![newest_pulled_release], TAGS, &["v2.0"]);
    }

    #[test]
    fn immutable_tags_stay_and_untagged_rules_keep_manifests() {
        let policy = RetentionPolicy {
            repositories: vec!["team/*".into()],
            rules: vec![
                KeepRule {
                    tags: vec!["latest".into()],
                    ..rule()
                },
                KeepRule {
                    untagged: true,
                    pushed_within: Some(2 * DAY as u64),
                    ..rule()
                },
            ],
        };
        let c = Compiled::new(&policy).unwrap();
        assert!(c.covers("team/api") && c.covers("team/a/b") && !c.covers("other/x"));
        assert!(c.has_untagged_rules());
        let immutable = ImmutableTags {
            patterns: vec!["v*".into()],
            exclude: vec!["*-rc*".into()],
        };
        let untagged = vec![
            Untagged {
                digest: "sha256:young".into(),
                pushed_at: NOW - DAY,
                pulled_at: None,
            },
            Untagged {
                digest: "sha256:old".into(),
                pushed_at: NOW - 3 * DAY,
                pulled_at: Some(NOW),
            },
        ];
        let d = c.decide(&tags(TAGS), &untagged, &immutable, NOW);
        let deleted: Vec<&str> = d.delete.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(deleted, ["0aa1bb2", "a1b2c3d", "e4f5a6b", "v2.1-rc1"]);
        assert_eq!(
            d.keep_untagged,
            BTreeSet::from(["sha256:young".to_string()])
        );
    }

    #[test]
    fn bad_policies_are_refused_with_what_is_wrong() {
        let bad = |rules: Vec<KeepRule>| {
            Compiled::new(&RetentionPolicy {
                repositories: vec![],
                rules,
            })
            .err()
            .unwrap()
        };
        assert!(bad(vec![]).contains("at least one keep rule"));
        let e = bad(vec![KeepRule {
            tags_regex: vec!["(".into()],
            ..rule()
        }]);
        assert!(e.contains("not a regular expression"), "{e}");
        let e = bad(vec![KeepRule {
            untagged: true,
            tags: vec!["v*".into()],
            ..rule()
        }]);
        assert!(e.contains("untagged rule takes no tag patterns"), "{e}");
        let e = bad(vec![KeepRule {
            newest_pushed: Some(0),
            ..rule()
        }]);
        assert!(e.contains("count of 0"), "{e}");
        let e = bad(vec![KeepRule {
            tags: vec![String::new()],
            ..rule()
        }]);
        assert!(e.contains("printable"), "{e}");
    }
}
