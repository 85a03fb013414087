//! View models of the console: the pure parts of its pages (sizes and times as people read
//! them, tag orders, the folder tree of a namespace, paging, pull commands, what a manifest
//! says), kept apart from IO so they are tested alone.

#[cfg(test)]
use std::cmp::Ordering;

use serde::Serialize;
use serde_json::Value;

/// Rows on one page of a listing.
pub const PAGE_SIZE: usize = 50;

/// Bytes as a person reads them (powers of 1000, as `docker images` prints them).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = 0;
    while v >= 999.95 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// How long ago `t` was, from `now` ("just now", "5 minutes ago", "3 days ago").
pub fn ago(t: i64, now: i64) -> String {
    let s = (now - t).max(0);
    let (n, unit) = match s {
        0..=59 => return "just now".into(),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        86_400..=2_591_999 => (s / 86_400, "day"),
        2_592_000..=31_535_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// A timestamp as RFC 3339 (for `<time datetime>` and tooltips).
pub fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// How a repository's tags are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TagOrder {
    /// Newest push first (the default, as `docker images` lists).
    Pushed,
    /// `latest` first, then versions from highest, then other tags by name.
    Semver,
    Name,
}

impl TagOrder {
    pub fn parse(s: Option<&str>) -> TagOrder {
        match s {
            Some("semver") => TagOrder::Semver,
            Some("name") => TagOrder::Name,
            _ => TagOrder::Pushed,
        }
    }
}

/// A tag as the repository page lists it before its page is filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct TagRow {
    pub name: String,
    pub digest: String,
    pub pushed_at: i64,
    pub pulled_at: Option<i64>,
}

/// A tag read as a version: `v1.2.3-rc.1`, `1.2`, `3` (missing parts are 0). Pre-releases
/// sort below their release; `None` for anything else.
fn version(tag: &str) -> Option<([u64; 3], Option<&str>)> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    let (core, pre) = match t.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (t, None),
    };
    let mut parts = [0u64; 3];
    for (n, p) in core.split('.').enumerate() {
        if n == 3 || p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parts[n] = p.parse().ok()?;
    }
    Some((parts, pre))
}

/// The place of a tag in version order: `latest`, then versions from highest (a release
/// above its pre-releases, pre-releases from highest by name), then the rest by name.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum VersionKey {
    Latest,
    Version {
        parts: std::cmp::Reverse<[u64; 3]>,
        /// `None` (a release) sorts first.
        pre: Option<std::cmp::Reverse<String>>,
        name: String,
    },
    Other(String),
}

impl VersionKey {
    fn of(tag: &str) -> VersionKey {
        if tag == "latest" {
            return VersionKey::Latest;
        }
        match version(tag) {
            Some((parts, pre)) => VersionKey::Version {
                parts: std::cmp::Reverse(parts),
                pre: pre.map(|p| std::cmp::Reverse(p.to_string())),
                name: tag.to_string(),
            },
            None => VersionKey::Other(tag.to_string()),
        }
    }
}

/// Version order of two tags (as `VersionKey` sorts them; kept to check it against).
#[cfg(test)]
fn by_version(a: &str, b: &str) -> Ordering {
    match (a == "latest", b == "latest") {
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    match (version(a), version(b)) {
        (Some((va, pa)), Some((vb, pb))) => vb
            .cmp(&va)
            .then_with(|| match (pa, pb) {
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => y.cmp(x),
                (None, None) => Ordering::Equal,
            })
            .then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

pub fn sort_tags(rows: &mut [TagRow], order: TagOrder) {
    match order {
        TagOrder::Pushed => rows.sort_by(|a, b| {
            b.pushed_at
                .cmp(&a.pushed_at)
                .then_with(|| a.name.cmp(&b.name))
        }),
        // Each tag is read as a version once, not at every comparison (10 000 tags).
        TagOrder::Semver => rows.sort_by_cached_key(|r| VersionKey::of(&r.name)),
        TagOrder::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
    }
}

/// One page of a listing of `total` rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Page {
    /// 1-based, clamped to the pages there are.
    pub number: usize,
    pub pages: usize,
    pub total: usize,
    pub first_row: usize,
    pub last_row: usize,
}

impl Page {
    pub fn new(requested: Option<&str>, total: usize, size: usize) -> Page {
        let pages = total.div_ceil(size).max(1);
        let number = requested
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, pages);
        let start = (number - 1) * size;
        Page {
            number,
            pages,
            total,
            first_row: (start + 1).min(total),
            last_row: (start + size).min(total),
        }
    }

    /// The rows of this page out of all of them.
    pub fn slice<'a, T>(&self, all: &'a [T]) -> &'a [T] {
        let start = self.first_row.saturating_sub(1);
        &all[start.min(all.len())..self.last_row.min(all.len())]
    }
}

/// A folder of a namespace's tree: repositories sharing a path prefix.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Folder {
    pub name: String,
    /// The prefix below the namespace, with a trailing `/` (`team/`).
    pub path: String,
    pub repositories: usize,
}

/// What one level of a namespace's tree holds.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Level {
    pub folders: Vec<Folder>,
    /// Full names of the repositories directly at this level.
    pub repositories: Vec<String>,
}

impl Level {
    /// How many rows the level lists: its folders, then its repositories.
    pub fn len(&self) -> usize {
        self.folders.len() + self.repositories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The folders and repositories on `page` of this level (folders come first).
    pub fn on_page(&self, page: &Page) -> (&[Folder], &[String]) {
        let (start, end) = (page.first_row.saturating_sub(1), page.last_row);
        let f = self.folders.len();
        let r = self.repositories.len();
        let folders = &self.folders[start.min(f)..end.min(f)];
        let repos =
            &self.repositories[start.saturating_sub(f).min(r)..end.saturating_sub(f).min(r)];
        (folders, repos)
    }
}

/// The level `path` (`""` for the top, else `team/`) of namespace `ns` whose repositories
/// are `names` (sorted, full names such as `acme/team/api`). A name that is both a
/// repository and a folder (`acme/team` and `acme/team/api`) appears as both.
pub fn folder_level(ns: &str, names: &[String], path: &str) -> Level {
    let prefix = format!("{ns}/{path}");
    let mut level = Level::default();
    for name in names {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        match rest.split_once('/') {
            None if !rest.is_empty() => level.repositories.push(name.clone()),
            None => {}
            Some((folder, _)) => match level.folders.last_mut() {
                Some(f) if f.name == folder => f.repositories += 1,
                _ => level.folders.push(Folder {
                    name: folder.to_string(),
                    path: format!("{path}{folder}/"),
                    repositories: 1,
                }),
            },
        }
    }
    level
}

/// A command that pulls an image, for one client.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PullCommand {
    pub tool: &'static str,
    pub command: String,
}

/// Pull commands for `image` (`host/repo:tag` or `host/repo@digest`) with docker, podman,
/// nerdctl, skopeo and oras; over plain HTTP (`secure` false) each gets the flag it needs.
pub fn pull_commands(image: &str, secure: bool) -> Vec<PullCommand> {
    let last = image
        .rsplit('/')
        .next()
        .unwrap_or(image)
        .split(['@', ':'])
        .next()
        .unwrap_or("image");
    let flag = |f: &str| {
        if secure {
            String::new()
        } else {
            format!("{f} ")
        }
    };
    vec![
        PullCommand {
            tool: "docker",
            command: format!("docker pull {image}"),
        },
        PullCommand {
            tool: "podman",
            command: format!("podman pull {}{image}", flag("--tls-verify=false")),
        },
        PullCommand {
            tool: "nerdctl",
            command: format!("nerdctl pull {}{image}", flag("--insecure-registry")),
        },
        PullCommand {
            tool: "skopeo",
            command: format!(
                "skopeo copy {}docker://{image} oci:{last}",
                flag("--src-tls-verify=false")
            ),
        },
        PullCommand {
            tool: "oras",
            command: format!("oras pull {}{image}", flag("--plain-http")),
        },
    ]
}

/// A descriptor (config, layer, child manifest, referrer) as a page shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub human_size: String,
    /// `os/arch[/variant]` of an index's child.
    pub platform: Option<String>,
    /// `org.opencontainers.image.title` (ORAS file names).
    pub title: Option<String>,
}

fn descriptor(v: &Value) -> Option<Descriptor> {
    let size = v["size"].as_u64().unwrap_or(0);
    Some(Descriptor {
        media_type: v["mediaType"].as_str().unwrap_or("").to_string(),
        digest: v["digest"].as_str()?.to_string(),
        size,
        human_size: human_size(size),
        platform: platform(&v["platform"]),
        title: v["annotations"]["org.opencontainers.image.title"]
            .as_str()
            .map(str::to_string),
    })
}

/// `os/arch[/variant]` from an OCI platform object.
pub fn platform(p: &Value) -> Option<String> {
    let os = p["os"].as_str()?;
    let arch = p["architecture"].as_str()?;
    Some(match p["variant"].as_str() {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}

/// What a manifest or index says, read from its stored bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ManifestView {
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    /// An index's children.
    pub manifests: Vec<Descriptor>,
    pub annotations: Vec<(String, String)>,
    /// What the bytes add up to: the manifest's layers and config, or an index's children.
    pub content_size: u64,
}

impl ManifestView {
    pub fn parse(bytes: &[u8]) -> ManifestView {
        let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let list = |k: &str| -> Vec<Descriptor> {
            v[k].as_array()
                .map(|a| a.iter().filter_map(descriptor).collect())
                .unwrap_or_default()
        };
        let config = descriptor(&v["config"]);
        let layers = list("layers");
        let manifests = list("manifests");
        let content_size = config.as_ref().map_or(0, |c| c.size)
            + layers.iter().map(|l| l.size).sum::<u64>()
            + manifests.iter().map(|m| m.size).sum::<u64>();
        let annotations = v["annotations"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        ManifestView {
            config,
            layers,
            manifests,
            annotations,
            content_size,
        }
    }

    /// The platforms of an index's images (attestation entries, `unknown/unknown`, left out).
    pub fn platforms(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .manifests
            .iter()
            .filter_map(|m| m.platform.clone())
            .filter(|p| !p.starts_with("unknown/"))
            .collect();
        out.dedup();
        out
    }
}

/// What an image's config blob says, as the artifact page shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ImageConfig {
    pub platform: Option<String>,
    pub created: Option<String>,
    pub entrypoint: Option<String>,
    pub cmd: Option<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub env: Vec<String>,
    pub labels: Vec<(String, String)>,
}

/// Environment variables and labels an artifact page shows at most, and the characters
/// of each kept (what the console remembers of a config stays small).
const MAX_SHOWN: usize = 64;
const MAX_TEXT: usize = 512;

fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_TEXT) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

impl ImageConfig {
    /// `None` for a config that is not an image config (an artifact's empty `{}` or a
    /// Helm chart's). Long lists and texts are clipped (`MAX_SHOWN`, `MAX_TEXT`).
    pub fn parse(bytes: &[u8]) -> Option<ImageConfig> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        v.get("architecture")?;
        let c = &v["config"];
        let words = |x: &Value| {
            x.as_array().map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        };
        Some(ImageConfig {
            platform: platform(&v),
            created: v["created"].as_str().map(str::to_string),
            entrypoint: words(&c["Entrypoint"]).map(|w| clip(&w)),
            cmd: words(&c["Cmd"]).map(|w| clip(&w)),
            workdir: c["WorkingDir"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            user: c["User"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            env: c["Env"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .take(MAX_SHOWN)
                        .map(clip)
                        .collect()
                })
                .unwrap_or_default(),
            labels: c["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .take(MAX_SHOWN)
                        .map(|(k, v)| (clip(k), clip(v.as_str().unwrap_or_default())))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// The first 12 hex digits of a digest, as `docker images` shows an id.
pub fn short_digest(d: &str) -> String {
    let hex = d.split_once(':').map_or(d, |(_, h)| h);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<I, O: PartialEq + std::fmt::Debug>(f: impl Fn(I) -> O, cases: Vec<(I, O)>) {
        for (input, expected) in cases {
            assert_eq!(f(input), expected);
        }
    }

    #[test]
    fn sizes_read_like_docker_images() {
        check(
            human_size,
            vec![
                (0, "0 B".to_string()),
                (999, "999 B".into()),
                (1000, "1.0 kB".into()),
                (45_300_000, "45.3 MB".into()),
                (999_999_999, "1.0 GB".into()),
                (3_221_225_472, "3.2 GB".into()),
            ],
        );
    }

    #[test]
    fn times_read_as_how_long_ago() {
        check(
            |t| ago(t, 1_000_000),
            vec![
                (1_000_000, "just now".to_string()),
                (1_000_001, "just now".into()),
                (999_940, "1 minute ago".into()),
                (1_000_000 - 7200, "2 hours ago".into()),
                (1_000_000 - 86_400 * 3, "3 days ago".into()),
            ],
        );
    }

    fn rows(names: &[(&str, i64)]) -> Vec<TagRow> {
        names
            .iter()
            .map(|(n, t)| TagRow {
                name: n.to_string(),
                digest: format!("sha256:{n}"),
                pushed_at: *t,
                pulled_at: None,
            })
            .collect()
    }

    fn sorted(order: TagOrder, input: &[(&str, i64)]) -> Vec<String> {
        let mut r = rows(input);
        sort_tags(&mut r, order);
        r.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn tags_sort_by_push_time_version_or_name() {
        let tags = [
            ("v1.10.0", 5),
            ("v1.9.2", 9),
            ("latest", 9),
            ("1.10.0-rc.1", 4),
            ("ci-abc123", 7),
            ("v2", 1),
            ("v1.2", 3),
        ];
        assert_eq!(
            sorted(TagOrder::Pushed, &tags),
            [
                "latest",
                "v1.9.2",
                "ci-abc123",
                "v1.10.0",
                "1.10.0-rc.1",
                "v1.2",
                "v2"
            ]
        );
        assert_eq!(
            sorted(TagOrder::Semver, &tags),
            [
                "latest",
                "v2",
                "v1.10.0",
                "1.10.0-rc.1",
                "v1.9.2",
                "v1.2",
                "ci-abc123"
            ]
        );
        assert_eq!(
            sorted(TagOrder::Name, &tags),
            [
                "1.10.0-rc.1",
                "ci-abc123",
                "latest",
                "v1.10.0",
                "v1.2",
                "v1.9.2",
                "v2"
            ]
        );
        assert_eq!(TagOrder::parse(Some("semver")), TagOrder::Semver);
        // The cached keys order exactly as the comparison does.
        let names: Vec<&str> = tags.iter().map(|t| t.0).collect();
        for a in &names {
            for b in &names {
                assert_eq!(
                    VersionKey::of(a).cmp(&VersionKey::of(b)),
                    by_version(a, b),
                    "{a} {b}"
                );
            }
        }
        assert_eq!(TagOrder::parse(Some("bogus")), TagOrder::Pushed);
    }

    #[test]
    fn pages_clamp_and_slice() {
        let all: Vec<usize> = (0..120).collect();
        let p = Page::new(Some("3"), all.len(), 50);
        assert_eq!(
            (p.number, p.pages, p.first_row, p.last_row),
            (3, 3, 101, 120)
        );
        assert_eq!(p.slice(&all), &all[100..120]);
        let p = Page::new(Some("99"), all.len(), 50);
        assert_eq!(p.number, 3);
        let p = Page::new(Some("x"), all.len(), 50);
        assert_eq!((p.number, p.slice(&all).len()), (1, 50));
        let empty: Vec<usize> = Vec::new();
        let p = Page::new(None, 0, 50);
        assert_eq!((p.number, p.pages, p.first_row, p.last_row), (1, 1, 0, 0));
        assert!(p.slice(&empty).is_empty());
    }

    #[test]
    fn a_namespace_reads_as_a_folder_tree() {
        let names: Vec<String> = [
            "acme/api",
            "acme/team",
            "acme/team/api",
            "acme/team/web",
            "acme/team/x/deep",
            "acme/tools/ci",
            "acmex/other",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let top = folder_level("acme", &names, "");
        assert_eq!(top.repositories, ["acme/api", "acme/team"]);
        let folders: Vec<(&str, &str, usize)> = top
            .folders
            .iter()
            .map(|f| (f.name.as_str(), f.path.as_str(), f.repositories))
            .collect();
        assert_eq!(folders, [("team", "team/", 3), ("tools", "tools/", 1)]);
        let team = folder_level("acme", &names, "team/");
        assert_eq!(team.repositories, ["acme/team/api", "acme/team/web"]);
        assert_eq!(team.folders.len(), 1);
        assert_eq!(team.folders[0].path, "team/x/");
        assert_eq!(folder_level("acme", &names, "nope/"), Level::default());
        // A page takes folders first, then repositories.
        let page = Page::new(Some("2"), top.len(), 3);
        assert_eq!(
            top.on_page(&page),
            (&[][..], &["acme/team".to_string()][..])
        );
        let page = Page::new(None, top.len(), 3);
        let (folders, repos) = top.on_page(&page);
        assert_eq!((folders.len(), repos), (2, &["acme/api".to_string()][..]));
    }

    #[test]
    fn pull_commands_name_each_client_and_plain_http_flags() {
        let secure = pull_commands("r.example/acme/api:v1", true);
        let tools: Vec<&str> = secure.iter().map(|c| c.tool).collect();
        assert_eq!(tools, ["docker", "podman", "nerdctl", "skopeo", "oras"]);
        assert_eq!(
            secure[3].command,
            "skopeo copy docker://r.example/acme/api:v1 oci:api"
        );
        let plain = pull_commands("127.0.0.1:5000/acme/api@sha256:ab", false);
        assert_eq!(
            plain[1].command,
            "podman pull --tls-verify=false 127.0.0.1:5000/acme/api@sha256:ab"
        );
        assert_eq!(
            plain[4].command,
            "oras pull --plain-http 127.0.0.1:5000/acme/api@sha256:ab"
        );
    }

    #[test]
    fn manifests_and_configs_read_for_the_artifact_page() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
          "manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:a","size":500,"platform":{"os":"linux","architecture":"amd64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:b","size":600,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:c","size":700,"platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        let v = ManifestView::parse(index);
        assert_eq!(v.platforms(), ["linux/amd64", "linux/arm64/v8"]);
        assert_eq!(v.content_size, 1800);
        let image = br#"{"schemaVersion":2,"config":{"mediaType":"c","digest":"sha256:c","size":10},
          "layers":[{"mediaType":"l","digest":"sha256:l","size":1000000,"annotations":{"org.opencontainers.image.title":"a.txt"}}],
          "annotations":{"k":"v"}}"#;
        let v = ManifestView::parse(image);
        assert_eq!(v.layers[0].title.as_deref(), Some("a.txt"));
        assert_eq!(v.layers[0].human_size, "1.0 MB");
        assert_eq!(v.content_size, 1_000_010);
        assert_eq!(v.annotations, [("k".to_string(), "v".to_string())]);
        assert_eq!(ManifestView::parse(b"garbage"), ManifestView::default());
        let config = br#"{"architecture":"arm64","os":"linux","created":"2026-01-01T00:00:00Z",
          "config":{"Entrypoint":["/bin/app","--serve"],"Labels":{"team":"api"},"Env":["A=1"]}}"#;
        let c = ImageConfig::parse(config).unwrap();
        assert_eq!(c.platform.as_deref(), Some("linux/arm64"));
        assert_eq!(c.entrypoint.as_deref(), Some("/bin/app --serve"));
        assert_eq!(c.labels, [("team".to_string(), "api".to_string())]);
        assert_eq!(ImageConfig::parse(b"{}"), None);
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
    }
}
