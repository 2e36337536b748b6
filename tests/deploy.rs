//! The deployment artefacts against real tools. Every kustomize overlay in `deploy/k8s/overlays`
//! renders (`kubectl kustomize`) and validates against the Kubernetes schemas
//! (`kubernetes-validate --strict`, from the venv `.ci/install-deps.sh` makes; its schemas ship
//! in the wheel, so it runs offline). The rendered pods are then checked against the image
//! (`deploy/docker/Dockerfile`: command, user, KRB5_* paths, scripts) and against their own
//! `pgbouncer.ini` (ports, `%include`s, sockets, mounts), and that ini passes
//! `krbouncer --check` with the mounted paths mapped into a temp dir. Every
//! `deploy/examples/*.ini` passes `--check`; the image's health-check and drain scripts work
//! against a real krbouncer process, and its ticket-refresh loop feeds a keytab-less krbouncer
//! through a real KDC (the sidecar pattern). No container engine runs here; the image itself
//! is not built by this test.
//!
//! The ServiceMonitor is a CRD the validator has no schema for: it reports "Couldn't find
//! schema" for it, which is accepted for that kind only; its selector and port are checked
//! against the rendered Service here instead.
// Cargo.toml's [lints] are for the library: test code may unwrap and print.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::bouncer::Bouncer;
use common::ports::free_port;

/// Where `.ci/install-deps.sh` puts the Python tools (override: `KRBOUNCER_CI_VENV`).
const DEFAULT_VENV: &str = "/opt/krbouncer-ci/venv";
/// Oldest schema set the wheel ships; the newest is the validator's default.
const OLDEST_K8S: &str = "1.25";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv_tool(name: &str) -> PathBuf {
    let venv = std::env::var("KRBOUNCER_CI_VENV").unwrap_or_else(|_| DEFAULT_VENV.to_string());
    let tool = Path::new(&venv).join("bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run `bash .ci/install-deps.sh` as root (it creates {venv} with \
         kubernetes-validate)",
        tool.display()
    );
    tool
}

fn run(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("running {cmd:?}: {e} (run `bash .ci/install-deps.sh` as root)"),
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl kustomize DIR`, after checking the embedded kustomize can read these overlays
/// (directories in `resources`, `components`: kustomize v4+, kubectl 1.21+).
fn kustomize(dir: &Path) -> String {
    let version = run_ok(Command::new("kubectl").args(["version", "--client"]));
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("Kustomize Version: v"))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    assert!(
        major.is_some_and(|m| m >= 4),
        "kubectl embeds kustomize older than v4 (`kubectl version --client`:\n{version}); \
         Debian bookworm's kubernetes-client 1.20 is too old for deploy/k8s: install kubectl \
         1.21 or newer"
    );
    run_ok(Command::new("kubectl").arg("kustomize").arg(dir))
}

/// The YAML stream as JSON values, converted by the venv's PyYAML (a kubernetes-validate
/// dependency), so the test needs no YAML crate.
fn yaml_docs(yaml: &str) -> Vec<Value> {
    let mut child = Command::new(venv_tool("python"))
        .args([
            "-c",
            "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning the venv's python");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(yaml.as_bytes()).expect("writing YAML");
    }
    let out = child.wait_with_output().expect("python output");
    assert!(out.status.success(), "YAML did not parse");
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(Value::Array(docs)) => docs,
        other => panic!("unexpected YAML conversion result: {other:?}"),
    }
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn id(doc: &Value) -> String {
    format!("{}/{}", s(doc, "/kind"), s(doc, "/metadata/name"))
}

/// The runtime stage of deploy/docker/Dockerfile, as far as the pods depend on it.
#[derive(Debug, Default)]
struct Image {
    env: BTreeMap<String, String>,
    uid: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    /// Destinations of COPY lines (files placed into the image).
    files: BTreeSet<String>,
    /// Sources of COPY lines taken from the build context.
    context_sources: Vec<String>,
    symlinks: Vec<(String, String)>,
    healthcheck: Vec<String>,
}

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not a JSON list: {text}: {e}"))
}

fn parse_dockerfile(text: &str) -> Image {
    // Join continuation lines, drop comments.
    let mut lines = Vec::new();
    let mut cur = String::new();
    for raw in text.lines() {
        let l = raw.trim();
        if l.starts_with('#') || (l.is_empty() && cur.is_empty()) {
            continue;
        }
        match l.strip_suffix('\\') {
            Some(head) => cur += &format!("{head} "),
            None => {
                cur += l;
                lines.push(std::mem::take(&mut cur));
            }
        }
    }
    let mut img = Image::default();
    let mut in_runtime = false;
    for l in lines {
        let (instr, rest) = l.split_once(' ').unwrap_or((l.as_str(), ""));
        if instr == "FROM" {
            in_runtime = rest.ends_with(" AS runtime");
            continue;
        }
        if instr == "COPY" && !rest.starts_with("--from") {
            // The build stage copies the whole context: record every context source.
            let words: Vec<&str> = rest.split_whitespace().collect();
            img.context_sources
                .extend(words[..words.len() - 1].iter().map(|w| w.to_string()));
        }
        if !in_runtime {
            continue;
        }
        match instr {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("ENV KEY=value");
                    img.env.insert(k.to_string(), v.to_string());
                }
            }
            "USER" => img.uid = rest.split(':').next().unwrap_or("").to_string(),
            "ENTRYPOINT" => img.entrypoint = json_list(rest),
            "CMD" => img.cmd = json_list(rest),
            "HEALTHCHECK" => {
                let cmd = rest.split_once("CMD ").expect("HEALTHCHECK ... CMD [..]").1;
                img.healthcheck = json_list(cmd);
            }
            "COPY" => {
                let dst = rest.split_whitespace().last().expect("COPY dst");
                img.files.insert(dst.to_string());
            }
            "RUN" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                for w in words.windows(4) {
                    if w[0] == "ln" && w[1] == "-s" {
                        img.symlinks.push((w[2].to_string(), w[3].to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    img
}

fn image() -> Image {
    let path = repo().join("deploy/docker/Dockerfile");
    parse_dockerfile(&fs::read_to_string(&path).expect("reading the Dockerfile"))
}

/// `key = value` lines of an ini text (all sections) and its `%include` targets.
fn ini_values(ini: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut values = BTreeMap::new();
    let mut includes = Vec::new();
    for l in ini.lines().map(str::trim) {
        if let Some(target) = l.strip_prefix("%include ") {
            includes.push(target.trim().to_string());
        } else if !l.starts_with(';') && !l.starts_with('#') && !l.starts_with('[') {
            if let Some((k, v)) = l.split_once('=') {
                values.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    (values, includes)
}

fn port_of(addr: &str) -> i64 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

/// A rendered overlay: its documents by kind/name.
struct Rendered {
    docs: Vec<Value>,
}

impl Rendered {
    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.docs.iter().filter(move |d| s(d, "/kind") == kind)
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.docs
            .iter()
            .filter(|d| s(d, "/kind") == kind)
            .find(|d| s(d, "/metadata/name") == name)
            .unwrap_or_else(|| panic!("no {kind}/{name} in the rendered overlay"))
    }

    fn workloads(&self) -> Vec<&Value> {
        self.docs
            .iter()
            .filter(|d| matches!(s(d, "/kind"), "Deployment" | "StatefulSet"))
            .collect()
    }
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let Some(sel) = selector.as_object() else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn container<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    arr(pod, "/containers")
        .iter()
        .chain(arr(pod, "/initContainers"))
        .find(|c| s(c, "/name") == name)
}

fn env_of(c: &Value) -> BTreeMap<String, Value> {
    arr(c, "/env")
        .iter()
        .map(|e| {
            let v = e
                .get("value")
                .cloned()
                .unwrap_or_else(|| e["valueFrom"].clone());
            (s(e, "/name").to_string(), v)
        })
        .collect()
}

/// The volume mounted at the mount covering `path` in container `c` (longest prefix).
fn volume_for<'a>(pod: &'a Value, c: &Value, path: &str) -> Option<(&'a Value, String)> {
    let m = arr(c, "/volumeMounts")
        .iter()
        .filter(|m| {
            let mp = s(m, "/mountPath");
            path == mp || path.starts_with(&format!("{mp}/"))
        })
        .max_by_key(|m| s(m, "/mountPath").len())?;
    let vol = arr(pod, "/volumes")
        .iter()
        .find(|v| s(v, "/name") == s(m, "/name"))?;
    Some((vol, s(m, "/mountPath").to_string()))
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The keys a Secret/ConfigMap volume makes visible as files.
fn volume_files(r: &Rendered, vol: &Value) -> BTreeSet<String> {
    let (kind, name, items) = if let Some(sec) = vol.get("secret") {
        ("Secret", s(sec, "/secretName"), sec.get("items"))
    } else if let Some(cm) = vol.get("configMap") {
        ("ConfigMap", s(cm, "/name"), cm.get("items"))
    } else {
        return BTreeSet::new();
    };
    if let Some(items) = items.and_then(Value::as_array) {
        return items.iter().map(|i| s(i, "/path").to_string()).collect();
    }
    match r.of_kind(kind).find(|d| s(d, "/metadata/name") == name) {
        Some(doc) => doc["data"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        // Created outside the overlay (the keytab Secret) without items: unknown content.
        None => BTreeSet::new(),
    }
}

fn secret_file(r: &Rendered, vol: &Value, key: &str) -> String {
    use base64::Engine;
    let name = s(vol, "/secret/secretName");
    // kustomize wraps long base64 values over several lines.
    let data: String = s(r.get("Secret", name), &format!("/data/{key}"))
        .split_whitespace()
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_else(|e| panic!("Secret {name} key {key}: {e}"));
    String::from_utf8(bytes).expect("config file is UTF-8")
}

fn assert_restricted(what: &str, c: &Value, pod: &Value, img: &Image) {
    let sc = &c["securityContext"];
    assert_eq!(
        sc["allowPrivilegeEscalation"], false,
        "{what}: allowPrivilegeEscalation"
    );
    assert!(
        arr(sc, "/capabilities/drop").contains(&Value::from("ALL")),
        "{what}: capabilities.drop ALL"
    );
    for r in ["cpu", "memory"] {
        for kind in ["requests", "limits"] {
            assert!(
                c.pointer(&format!("/resources/{kind}/{r}")).is_some(),
                "{what}: resources.{kind}.{r}"
            );
        }
    }
    if s(c, "/image").starts_with("krbouncer") {
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{what}: readOnlyRootFilesystem"
        );
        let uid = sc
            .get("runAsUser")
            .or_else(|| pod.pointer("/securityContext/runAsUser"))
            .map(Value::to_string);
        assert_eq!(
            uid.as_deref(),
            Some(img.uid.as_str()),
            "{what}: runAsUser = image USER"
        );
    }
}

/// The pod's krbouncer container against the image and its own pgbouncer.ini, then
/// `krbouncer --check` on that ini. Returns the ini text.
fn check_krbouncer_container(r: &Rendered, w: &Value, img: &Image, tmp: &Path) -> String {
    let what = id(w);
    let pod = &w["spec"]["template"]["spec"];
    let c = container(pod, "krbouncer").unwrap_or_else(|| panic!("{what}: no krbouncer container"));
    let args: Vec<String> = arr(c, "/args")
        .iter()
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(args, img.cmd, "{what}: args = the image's CMD");
    let ini_path = &img.cmd[0];
    let conf_dir = ini_path.rsplit_once('/').expect("absolute ini path").0;

    // Config Secret at /etc/pgbouncer with both files, under a hashed generator name.
    let (conf_vol, conf_mount) = volume_for(pod, c, ini_path)
        .unwrap_or_else(|| panic!("{what}: nothing mounted at {ini_path}"));
    assert_eq!(conf_mount, conf_dir, "{what}: config mount");
    let files = volume_files(r, conf_vol);
    assert!(
        files.contains("pgbouncer.ini") && files.contains("users.txt"),
        "{what}: config volume holds {files:?}"
    );
    let secret_name = s(conf_vol, "/secret/secretName");
    assert!(
        secret_name.starts_with("krbouncer-config-"),
        "{what}: config Secret {secret_name} has no content-hash suffix"
    );

    // KRB5_* agree with the image's ENV and are backed by mounts.
    let env = env_of(c);
    let krb5_config = env["KRB5_CONFIG"].as_str().expect("KRB5_CONFIG value");
    assert_eq!(
        Some(krb5_config),
        img.env.get("KRB5_CONFIG").map(String::as_str),
        "{what}: KRB5_CONFIG"
    );
    let (vol, _) = volume_for(pod, c, krb5_config)
        .unwrap_or_else(|| panic!("{what}: no mount for {krb5_config}"));
    assert!(
        vol.get("configMap").is_some() && volume_files(r, vol).contains(basename(krb5_config)),
        "{what}: {krb5_config} not from the krb5.conf ConfigMap"
    );
    if let Some(kt) = env.get("KRB5_CLIENT_KTNAME").and_then(Value::as_str) {
        assert_eq!(
            Some(kt),
            img.env.get("KRB5_CLIENT_KTNAME").map(String::as_str),
            "{what}: KRB5_CLIENT_KTNAME"
        );
        let (vol, _) =
            volume_for(pod, c, kt).unwrap_or_else(|| panic!("{what}: no mount for {kt}"));
        assert!(
            vol.get("secret").is_some(),
            "{what}: keytab not from a Secret"
        );
        assert!(
            volume_files(r, vol).contains(basename(kt)),
            "{what}: keytab Secret items lack {kt}"
        );
    }
    let ccache = env["KRB5CCNAME"].as_str().expect("KRB5CCNAME value");
    if let Some(path) = ccache.strip_prefix("FILE:") {
        let (vol, _) =
            volume_for(pod, c, path).unwrap_or_else(|| panic!("{what}: no mount for {path}"));
        assert!(
            vol.get("emptyDir").is_some(),
            "{what}: ccache volume is not an emptyDir"
        );
        let refresher = container(pod, "ticket-refresh")
            .unwrap_or_else(|| panic!("{what}: FILE ccache without a ticket-refresh container"));
        assert_eq!(
            env_of(refresher)["KRB5CCNAME"],
            ccache,
            "{what}: both sides name one cache"
        );
        let (rvol, _) = volume_for(pod, refresher, path).expect("refresher mounts the cache");
        assert_eq!(
            rvol["name"], vol["name"],
            "{what}: the cache volume is shared"
        );
        let rkt = env_of(refresher)["KRB5_CLIENT_KTNAME"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            volume_for(pod, refresher, &rkt).is_some(),
            "{what}: refresher has no keytab at {rkt}"
        );
    } else {
        assert_eq!(ccache, "MEMORY:", "{what}: KRB5CCNAME");
    }

    // Ports, probes and the ini.
    let ini = secret_file(r, conf_vol, "pgbouncer.ini");
    let (values, includes) = ini_values(&ini);
    let port = |name: &str| {
        arr(c, "/ports")
            .iter()
            .find(|p| s(p, "/name") == name)
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("{what}: no container port {name}"))
    };
    let listen = values
        .get("listen_port")
        .map_or(6432, |p| p.parse().expect("listen_port"));
    assert_eq!(
        port("pgbouncer"),
        listen,
        "{what}: port pgbouncer = listen_port"
    );
    let metrics = values
        .get("metrics_addr")
        .unwrap_or_else(|| panic!("{what}: no metrics_addr"));
    assert_eq!(
        port("metrics"),
        port_of(metrics),
        "{what}: port metrics = metrics_addr"
    );
    assert_eq!(
        img.env.get("KRBOUNCER_METRICS_PORT").map(|p| port_of(p)),
        Some(port_of(metrics)),
        "{what}: the image's health check port"
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(
            s(c, &format!("/{probe}/httpGet/path")),
            path,
            "{what}: {probe}"
        );
        assert_eq!(
            s(c, &format!("/{probe}/httpGet/port")),
            "metrics",
            "{what}: {probe} port"
        );
    }
    assert_eq!(
        values.get("auth_file").map(String::as_str),
        Some(format!("{conf_dir}/users.txt").as_str()),
        "{what}: auth_file"
    );
    let sockdir = values.get("unix_socket_dir").map_or("/tmp", String::as_str);
    if !sockdir.is_empty() {
        let (vol, _) = volume_for(pod, c, sockdir)
            .unwrap_or_else(|| panic!("{what}: unix_socket_dir {sockdir} not writable"));
        assert!(
            vol.get("emptyDir").is_some(),
            "{what}: unix_socket_dir on a non-emptyDir volume"
        );
    }

    // Scripts the pod runs are in the image.
    let mut commands: Vec<&str> = vec![s(c, "/lifecycle/preStop/exec/command/0")];
    commands.extend(
        arr(pod, "/initContainers")
            .iter()
            .map(|i| s(i, "/command/0")),
    );
    for cmd in commands.into_iter().filter(|c| !c.is_empty()) {
        assert!(
            img.files.contains(cmd),
            "{what}: {cmd} is not installed by the Dockerfile"
        );
    }

    // Materialise the mounted files under tmp: the config Secret, and what init containers
    // write (run for real: krbouncer-gen-peers with the init container's env).
    fs::create_dir_all(tmp.join(&conf_dir[1..])).expect("mkdir");
    for f in ["pgbouncer.ini", "users.txt"] {
        fs::write(
            tmp.join(&conf_dir[1..]).join(f),
            secret_file(r, conf_vol, f),
        )
        .expect("write");
    }
    for init in arr(pod, "/initContainers") {
        run_init_container(w, init, tmp);
    }
    fs::create_dir_all(tmp.join(sockdir.trim_start_matches('/'))).expect("mkdir sockdir");
    // Every include must land in a volume an init container fills.
    for inc in &includes {
        let (vol, _) =
            volume_for(pod, c, inc).unwrap_or_else(|| panic!("{what}: %include {inc} not mounted"));
        let filled = arr(pod, "/initContainers")
            .iter()
            .any(|i| volume_for(pod, i, inc).is_some_and(|(v, _)| v["name"] == vol["name"]));
        assert!(filled, "{what}: no init container writes {inc}");
    }
    let mapped = map_paths(&ini, c, tmp);
    let ini_file = tmp.join("mapped.ini");
    fs::write(&ini_file, mapped).expect("write mapped ini");
    check_config(&ini_file);
    ini
}

/// Rewrites absolute paths under the container's mounts to the same paths under `tmp`.
fn map_paths(ini: &str, c: &Value, tmp: &Path) -> String {
    let mounts: Vec<&str> = arr(c, "/volumeMounts")
        .iter()
        .map(|m| s(m, "/mountPath"))
        .collect();
    let map = |v: &str| -> Option<String> {
        mounts
            .iter()
            .any(|m| v == *m || v.starts_with(&format!("{m}/")))
            .then(|| format!("{}{v}", tmp.display()))
    };
    ini.lines()
        .map(|l| {
            if let Some(t) = l.trim().strip_prefix("%include ") {
                return format!(
                    "%include {}",
                    map(t.trim()).unwrap_or_else(|| t.to_string())
                );
            }
            match l.split_once('=') {
                Some((k, v)) if !l.trim_start().starts_with(';') => match map(v.trim()) {
                    Some(m) => format!("{k}= {m}"),
                    None => l.to_string(),
                },
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Pod name of the workload's last replica (StatefulSet ordinals), namespace "default".
fn field_ref(w: &Value, field: &str) -> String {
    match field {
        "metadata.name" => {
            let replicas = w
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            format!("{}-{}", s(w, "/metadata/name"), replicas - 1)
        }
        "metadata.namespace" => "default".to_string(),
        other => panic!("unexpected fieldRef {other}"),
    }
}

fn init_env(w: &Value, init: &Value) -> BTreeMap<String, String> {
    env_of(init)
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                from => field_ref(w, s(&from, "/fieldRef/fieldPath")),
            };
            (k, v)
        })
        .collect()
}

fn run_init_container(w: &Value, init: &Value, tmp: &Path) {
    let cmd: Vec<&str> = arr(init, "/command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let script = match cmd[0] {
        "/usr/local/bin/krbouncer-gen-peers" => repo().join("deploy/docker/gen-peers.sh"),
        other => panic!("{}: unknown init container command {other}", id(w)),
    };
    let out_dir = format!("{}{}", tmp.display(), cmd[1]);
    run_ok(
        Command::new("bash")
            .arg(script)
            .arg(out_dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(init_env(w, init)),
    );
}

fn check_config(ini: &Path) {
    let out = run(Command::new(common::bouncer::krbouncer_bin())
        .arg("--check")
        .arg(ini));
    assert!(
        out.status.success(),
        "krbouncer --check {} failed:\n{}{}\n--- ini:\n{}",
        ini.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(ini).unwrap_or_default()
    );
}

/// Services, PDBs, the HPA and the ServiceMonitor point at things that exist.
fn check_references(r: &Rendered) {
    let pod_labels: Vec<&Value> = r
        .workloads()
        .iter()
        .map(|w| &w["spec"]["template"]["metadata"]["labels"])
        .collect();
    for w in r.workloads() {
        assert!(
            labels_match(
                &w["spec"]["selector"]["matchLabels"],
                &w["spec"]["template"]["metadata"]["labels"]
            ),
            "{}",
            id(w)
        );
    }
    for svc in r.of_kind("Service") {
        let labels = pod_labels
            .iter()
            .find(|l| labels_match(&svc["spec"]["selector"], l))
            .unwrap_or_else(|| panic!("{} selects no pod", id(svc)));
        let w = r
            .workloads()
            .into_iter()
            .find(|w| &&w["spec"]["template"]["metadata"]["labels"] == labels)
            .expect("workload");
        let pod = &w["spec"]["template"]["spec"];
        for p in arr(svc, "/spec/ports") {
            let target = s(p, "/targetPort");
            let found = arr(pod, "/containers")
                .iter()
                .flat_map(|c| arr(c, "/ports"))
                .any(|cp| s(cp, "/name") == target);
            assert!(
                found,
                "{}: targetPort {target} is no container port",
                id(svc)
            );
        }
    }
    for pdb in r.of_kind("PodDisruptionBudget") {
        assert!(
            pod_labels
                .iter()
                .any(|l| labels_match(&pdb["spec"]["selector"]["matchLabels"], l)),
            "{} selects no pod",
            id(pdb)
        );
    }
    let monitors: Vec<&Value> = r.of_kind("ServiceMonitor").collect();
    assert_eq!(monitors.len(), 1, "one ServiceMonitor");
    for sm in monitors {
        let svc = r
            .of_kind("Service")
            .find(|svc| {
                labels_match(
                    &sm["spec"]["selector"]["matchLabels"],
                    &svc["metadata"]["labels"],
                )
            })
            .unwrap_or_else(|| panic!("{} selects no Service", id(sm)));
        for ep in arr(sm, "/spec/endpoints") {
            assert!(
                arr(svc, "/spec/ports")
                    .iter()
                    .any(|p| p["name"] == ep["port"]),
                "{}: endpoint port {} not on {}",
                id(sm),
                ep["port"],
                id(svc)
            );
            assert_eq!(s(ep, "/path"), "/metrics");
        }
    }
}

/// StatefulSet + headless Service + [peers] from an init container: names and counts agree,
/// and gen-peers refuses a replica beyond PEER_COUNT.
fn check_peers(r: &Rendered, tmp: &Path) {
    for w in r.of_kind("StatefulSet") {
        let pod = &w["spec"]["template"]["spec"];
        let init =
            container(pod, "peers").unwrap_or_else(|| panic!("{}: no peers init container", id(w)));
        let env = init_env(w, init);
        let svc_name = s(w, "/spec/serviceName");
        assert_eq!(
            env["PEER_SERVICE"],
            svc_name,
            "{}: PEER_SERVICE = serviceName",
            id(w)
        );
        let svc = r.get("Service", svc_name);
        assert_eq!(s(svc, "/spec/clusterIP"), "None", "{svc_name} is headless");
        assert_eq!(
            svc["spec"]["publishNotReadyAddresses"], true,
            "{svc_name}: draining pods keep DNS"
        );
        let count: i64 = env["PEER_COUNT"].parse().expect("PEER_COUNT");
        let hpa = r
            .of_kind("HorizontalPodAutoscaler")
            .find(|h| s(h, "/spec/scaleTargetRef/name") == s(w, "/metadata/name"))
            .unwrap_or_else(|| panic!("{}: no HPA", id(w)));
        assert_eq!(s(hpa, "/spec/scaleTargetRef/kind"), "StatefulSet");
        let max = hpa["spec"]["maxReplicas"].as_i64().expect("maxReplicas");
        assert!(
            max <= count,
            "HPA maxReplicas {max} > PEER_COUNT {count}: new replicas would be unknown peers"
        );
        let replicas = w["spec"]["replicas"].as_i64().expect("replicas");
        assert!(replicas <= max && hpa["spec"]["minReplicas"].as_i64() <= Some(max));
        let peers =
            fs::read_to_string(tmp.join("run/krbouncer/peers.ini")).expect("peers.ini written");
        assert_eq!(
            peers.lines().filter(|l| !l.starts_with(';')).count() as i64,
            count,
            "{peers}"
        );
        let own = fs::read_to_string(tmp.join("run/krbouncer/peer_id.ini")).expect("peer_id.ini");
        assert!(own.contains(&format!("peer_id = {replicas}")), "{own}");
        let beyond = run(Command::new("bash")
            .arg(repo().join("deploy/docker/gen-peers.sh"))
            .arg(tmp.join("beyond"))
            .envs(&env)
            .env("POD_NAME", format!("{}-{count}", s(w, "/metadata/name"))));
        assert!(
            !beyond.status.success(),
            "gen-peers accepted an ordinal beyond PEER_COUNT"
        );
    }
}

fn overlays() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(repo().join("deploy/k8s/overlays"))
        .expect("deploy/k8s/overlays")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("kustomization.yaml").exists())
        .collect();
    dirs.sort();
    dirs
}

fn validate(file: &Path, docs: &[Value], version: Option<&str>) {
    let mut cmd = Command::new(venv_tool("kubernetes-validate"));
    cmd.arg("--strict");
    if let Some(v) = version {
        cmd.args(["-k", v]);
    }
    let out = run_ok(cmd.arg(file));
    let mut passed = 0;
    for line in out.lines() {
        if line.starts_with("INFO ") && line.contains(" passed for resource ") {
            passed += 1;
        } else if line.starts_with("WARN ") {
            assert!(
                line.contains("Couldn't find schema for kind ServiceMonitor with api version monitoring.coreos.com/v1"),
                "unexpected validator warning: {line}"
            );
        } else {
            panic!("unexpected validator output: {line}");
        }
    }
    let crds = docs
        .iter()
        .filter(|d| s(d, "/kind") == "ServiceMonitor")
        .count();
    assert_eq!(
        passed + crds,
        docs.len(),
        "every document validated:\n{out}"
    );
}

#[test]
fn overlays_render_validate_and_agree_with_the_image() {
    let img = image();
    let list = overlays();
    assert!(list.len() >= 2, "overlays: {list:?}");
    for dir in list {
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let tmp = tempfile::tempdir().expect("temp dir");
        let yaml = kustomize(&dir);
        let file = tmp.path().join(format!("{name}.yaml"));
        fs::write(&file, &yaml).expect("write rendered");
        let docs = yaml_docs(&yaml);
        validate(&file, &docs, Some(OLDEST_K8S));
        validate(&file, &docs, None);

        let r = Rendered { docs };
        check_references(&r);
        let workloads = r.workloads();
        assert!(!workloads.is_empty(), "{name}: no workload");
        for w in workloads {
            let what = id(w);
            let pod = &w["spec"]["template"]["spec"];
            assert_eq!(
                s(pod, "/securityContext/seccompProfile/type"),
                "RuntimeDefault",
                "{what}"
            );
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"], true,
                "{what}: runAsNonRoot"
            );
            assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
            assert!(
                pod["terminationGracePeriodSeconds"]
                    .as_i64()
                    .is_some_and(|t| t >= 30),
                "{what}"
            );
            for c in arr(pod, "/containers")
                .iter()
                .chain(arr(pod, "/initContainers"))
            {
                assert_restricted(&format!("{what} container {}", s(c, "/name")), c, pod, &img);
            }
            let wdir = tmp.path().join(s(w, "/metadata/name"));
            check_krbouncer_container(&r, w, &img, &wdir);
            check_peers(&r, &wdir);
        }
        assert!(
            r.of_kind("PodDisruptionBudget").count() >= 1,
            "{name}: PodDisruptionBudget"
        );
    }
    let cp = yaml_docs(&kustomize(
        &repo().join("deploy/k8s/overlays/control-plane"),
    ));
    assert!(
        cp.iter()
            .any(|d| s(d, "/kind") == "HorizontalPodAutoscaler"),
        "control-plane HPA"
    );
}

#[test]
fn a_config_change_rolls_the_pods() {
    // The generators' content hash is the checksum annotation: a changed pgbouncer.ini or
    // krb5.conf changes the Secret/ConfigMap name the pod template refers to.
    let tmp = tempfile::tempdir().expect("temp dir");
    let k8s = tmp.path().join("k8s");
    copy_dir(&repo().join("deploy/k8s"), &k8s);
    for overlay in ["sidecar", "control-plane"] {
        let dir = k8s.join("overlays").join(overlay);
        let template = |yaml: &str| {
            let docs = yaml_docs(yaml);
            let w = docs
                .iter()
                .find(|d| matches!(s(d, "/kind"), "Deployment" | "StatefulSet"))
                .expect("workload")
                .clone();
            w["spec"]["template"].clone()
        };
        let before = template(&kustomize(&dir));
        let ini = dir.join("pgbouncer.ini");
        let text = fs::read_to_string(&ini).expect("read ini");
        fs::write(
            &ini,
            text.replacen("[pgbouncer]", "[pgbouncer]\ndefault_pool_size = 7", 1),
        )
        .expect("write");
        let after_ini = template(&kustomize(&dir));
        assert_ne!(
            before, after_ini,
            "{overlay}: pgbouncer.ini change left the pod template alone"
        );
        fs::write(&ini, text).expect("restore");
        let krb5 = k8s.join("base/krb5.conf");
        let kt = fs::read_to_string(&krb5).expect("read krb5.conf");
        fs::write(&krb5, format!("{kt}\n# changed\n")).expect("write");
        assert_ne!(
            before,
            template(&kustomize(&dir)),
            "{overlay}: krb5.conf change did not roll"
        );
        fs::write(&krb5, kt).expect("restore");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), dst).expect("copy");
        }
    }
}

#[test]
fn examples_pass_check_and_a_broken_one_does_not() {
    let dir = repo().join("deploy/examples");
    let mut inis: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("deploy/examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ini"))
        .collect();
    inis.sort();
    let names: Vec<String> = inis
        .iter()
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    for want in ["airflow-sidecar", "control-plane", "plain-password"] {
        assert!(
            names.iter().any(|n| n == want),
            "deploy/examples/{want}.ini missing"
        );
    }
    for (ini, name) in inis.iter().zip(&names) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let etc = tmp.path().join("etc/pgbouncer");
        fs::create_dir_all(&etc).expect("mkdir");
        let users = dir.join(format!("{name}.users.txt"));
        fs::copy(&users, etc.join("users.txt"))
            .unwrap_or_else(|e| panic!("{}: {e}", users.display()));
        let text = fs::read_to_string(ini).expect("read example");
        assert!(
            text.contains("auth_file = /etc/pgbouncer/users.txt"),
            "{name}: auth_file path"
        );
        let mapped = text.replace("/etc/pgbouncer/", &format!("{}/", etc.display()));
        let target = etc.join("pgbouncer.ini");
        fs::write(&target, &mapped).expect("write");
        check_config(&target);
        // The check is real: an unknown key in [pgbouncer] (every example ends in it) fails.
        fs::write(&target, format!("{mapped}\nno_such_setting = 1\n")).expect("write");
        let out = run(Command::new(common::bouncer::krbouncer_bin())
            .arg("--check")
            .arg(&target));
        assert!(
            !out.status.success(),
            "{name}: --check accepted an unknown setting"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no_such_setting"),
            "{name}: error names the key: {err}"
        );
    }
}

#[test]
fn image_context_and_paths() {
    let img = image();
    assert_eq!(img.cmd, ["/etc/pgbouncer/pgbouncer.ini"]);
    assert_eq!(img.entrypoint, ["/usr/local/bin/pgbouncer"]);
    assert!(
        img.symlinks
            .iter()
            .any(|(from, to)| from == "krbouncer" && to == "/usr/local/bin/pgbouncer"),
        "pgbouncer symlink: {:?}",
        img.symlinks
    );
    assert!(img.files.contains("/usr/local/bin/krbouncer"));
    assert!(
        img.files.contains(&img.healthcheck[0]),
        "HEALTHCHECK script installed"
    );
    assert!(
        img.uid.parse::<u32>().is_ok_and(|u| u > 0),
        "numeric non-root USER: {}",
        img.uid
    );
    for k in ["KRB5_CONFIG", "KRB5_CLIENT_KTNAME", "KRB5CCNAME"] {
        assert!(img.env.contains_key(k), "ENV {k}");
    }
    // .dockerignore is a whitelist: everything the Dockerfile copies from the context is let in.
    let ignore = fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    let allowed: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    assert!(
        ignore.lines().any(|l| l == "*"),
        ".dockerignore starts from nothing"
    );
    for src in &img.context_sources {
        let src = src.trim_start_matches("./");
        if src == "." {
            continue;
        }
        assert!(
            allowed
                .iter()
                .any(|a| src.starts_with(a.trim_end_matches('/'))),
            "{src} is excluded by .dockerignore"
        );
        assert!(repo().join(src).exists(), "{src} does not exist");
    }
    for a in allowed {
        assert!(
            repo().join(a).exists(),
            ".dockerignore lets in {a}, which does not exist"
        );
    }
}

#[test]
fn health_check_and_drain_scripts_work_against_krbouncer() {
    let metrics = free_port();
    let ini = format!(
        "[databases]\nx = host=127.0.0.1 port=1\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
         listen_port = @PORT@\nunix_socket_dir = @DIR@\nauth_type = md5\n\
         auth_file = @DIR@/users.txt\nmetrics_addr = 127.0.0.1:{metrics}\n"
    );
    let mut b = Bouncer::start_with(ini, String::new(), vec![], vec![]);
    let hc = |path: &str, port: u16| {
        run(Command::new("bash")
            .arg(repo().join("deploy/docker/healthcheck.sh"))
            .arg(path)
            .arg(port.to_string()))
        .status
        .success()
    };
    assert!(
        common::wait::until(Duration::from_secs(10), || hc("/healthz", metrics)),
        "healthz:\n{}",
        b.log()
    );
    assert!(hc("/readyz", metrics), "readyz");
    assert!(!hc("/no-such-path", metrics), "a 404 is unhealthy");
    assert!(!hc("/healthz", free_port()), "a closed port is unhealthy");

    // preStop: SIGINT, then block until the process is gone (we reap it meanwhile: a zombie
    // child would still answer kill -0).
    let pid = b.pid().expect("running");
    let mut drain = Command::new("bash")
        .arg(repo().join("deploy/docker/drain.sh"))
        .arg(pid.to_string())
        .arg("0")
        .spawn()
        .expect("spawn drain");
    let status = b.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some(),
        "krbouncer did not exit on the drain's SIGINT:\n{}",
        b.log()
    );
    let drained = common::wait::until(Duration::from_secs(10), || {
        matches!(drain.try_wait(), Ok(Some(_)))
    });
    assert!(drained, "drain script still running after krbouncer exited");
    assert!(drain.wait().expect("drain status").success());
}

/// Kills a child process (by its pid) when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ticket_refresh_sidecar_feeds_a_keytab_less_krbouncer() {
    // The sidecar pattern with the real scripts and a real KDC: krbouncer gets only
    // KRB5CCNAME=FILE:<shared cache>, no keytab; the image's ticket-refresh loop fills it.
    use common::kdc::{KrbLab, LabOptions};
    let lab = KrbLab::start(LabOptions::default());
    let shared = tempfile::tempdir().expect("temp dir");
    let cache = format!("FILE:{}/krb5cc", shared.path().display());
    let ini = format!(
        "[databases]\nairflow = host=localhost port={port} dbname=labdb user={princ}\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = @PORT@\nunix_socket_dir = @DIR@\n\
         auth_type = md5\nauth_file = @DIR@/users.txt\nserver_login_retry = 0.2\n\
         server_gssauth_negotiate = require\nserver_krb_spn = {spn}\n",
        port = lab.pg_port(),
        princ = lab.user_principal(),
        spn = lab.spn(),
    );
    let env = vec![
        (
            "KRB5_CONFIG".to_string(),
            lab.var("KRB5_CONFIG").to_string(),
        ),
        ("KRB5CCNAME".to_string(), cache.clone()),
    ];
    let b = Bouncer::start_with(
        ini,
        common::secrets::auth_file_line("app", "app-pw") + "\n",
        vec![],
        env,
    );
    let query = || {
        b.psql(
            "app",
            "app-pw",
            "airflow",
            &[
                "-tAc",
                "SELECT gss_authenticated FROM pg_stat_gssapi WHERE pid = pg_backend_pid()",
            ],
        )
    };
    // Before the refresher ran there is no ticket: the login fails for want of credentials.
    let out = query();
    assert!(
        !out.status.success(),
        "logged in without any Kerberos credentials"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no usable Kerberos credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _refresher = KillOnDrop(
        Command::new("bash")
            .arg(repo().join("deploy/docker/ticket-refresh.sh"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
            .env("KRB5_CONFIG", lab.var("KRB5_CONFIG"))
            .env("KRB5_PRINCIPAL", lab.user_principal())
            .env("KRB5_CLIENT_KTNAME", lab.var("PGLAB_USER_KEYTAB"))
            .env("KRB5CCNAME", &cache)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn ticket-refresh.sh"),
    );
    let mut last = None;
    let ok = common::wait::until(Duration::from_secs(15), || {
        let out = query();
        let good = out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "t";
        last = Some(out);
        good
    });
    let last = last.expect("queried");
    assert!(
        ok,
        "no GSSAPI login through the refreshed cache: {}\n{}",
        String::from_utf8_lossy(&last.stderr),
        b.log()
    );
}
