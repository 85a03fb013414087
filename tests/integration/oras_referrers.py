#!/usr/bin/env python3
"""oras-py 0.2.43 against a Shoal node: push artifact, push referrers (subject), pull, referrers API.
Usage: python3 oras_referrers.py 127.0.0.1:PORT USER PASSWORD   (namespace 'acme' must exist)
Run by tests/integration/oras.rs; exits non-zero with the failed assertion on any mismatch."""
import hashlib, json, os, sys, tempfile
import requests
import oras.client, oras.oci, oras.defaults

HOST, USER, PASSWORD = sys.argv[1], sys.argv[2], sys.argv[3]
AUTH = (USER, PASSWORD)  # Basic credentials straight on /v2 for the hand-made requests
REPO = "acme/artifacts"
T_README = "application/vnd.acme.readme.v1"   # artifact 1 (config.mediaType)
T_SBOM = "application/vnd.example.sbom.v1"    # artifact 2 (config.mediaType, via push(subject=))
T_SIG = "application/vnd.example.sig.v1"      # artifact 3 (real artifactType field, hand-built)
EMPTY = "application/vnd.oci.empty.v1+json"

# Basic credentials on every request (Shoal takes them on /v2 directly). oras-py's token
# backend keeps its first token after a 401 and only refetches on a 403, so it cannot widen
# a pull token for a push, against Shoal or Distribution alike.
client = oras.client.OrasClient(hostname=HOST, insecure=True, auth_backend="basic")
client.login(username=USER, password=PASSWORD, hostname=HOST, tls_verify=False)
work = tempfile.mkdtemp()
os.chdir(work)  # push() requires files below the CWD unless disable_path_validation=True

def write(name, text):
    with open(name, "w") as f:
        f.write(text)
    return name

def check(resp, what):
    assert resp.status_code in (200, 201, 202), f"{what}: {resp.status_code} {resp.text}"
    return resp

# 1) artifact: one text file; push() has no artifactType arg, so set a custom config mediaType
#    (referrers fall back to config.mediaType when artifactType is absent).
write("hello.txt", "hello artifact\n")
write("config.json", "{}")
r1 = check(client.push(target=f"{HOST}/{REPO}:v1", files=["hello.txt:text/plain"],
                       manifest_config=f"config.json:{T_README}",
                       manifest_annotations={"org.example.note": "first"}), "push v1")
d1 = r1.headers["Docker-Content-Digest"]
raw1 = requests.get(f"http://{HOST}/v2/{REPO}/manifests/{d1}",
                    headers={"Accept": oras.defaults.default_manifest_media_type}, auth=AUTH).content
assert "sha256:" + hashlib.sha256(raw1).hexdigest() == d1, "stored bytes != digest"
subject = oras.oci.Subject(mediaType=oras.defaults.default_manifest_media_type, digest=d1, size=len(raw1))
print("artifact v1:", d1, "Location:", r1.headers.get("Location"))

# 2) sbom referrer via push(subject=...) (oras-py supports subject natively)
write("sbom.json", json.dumps({"spdxVersion": "SPDX-2.3", "name": "hello"}))
r2 = check(client.push(target=f"{HOST}/{REPO}:sbom", files=["sbom.json:application/spdx+json"],
                       manifest_config=f"config.json:{T_SBOM}", subject=subject), "push sbom")
d2 = r2.headers["Docker-Content-Digest"]
print("sbom:", d2, "OCI-Subject:", r2.headers.get("OCI-Subject"))

# 3) OCI 1.1 style referrer with a real artifactType + empty config, built by hand and pushed by
#    digest (no tag) with the client's upload_blob / upload_manifest.
container = client.get_container(f"{HOST}/{REPO}")
write("empty.json", "{}")
write("sig.txt", "fake-signature\n")
empty = {"mediaType": EMPTY, "size": 2, "digest": oras.defaults.blank_config_hash}
check(client.upload_blob("empty.json", container, empty), "blob empty")
sig_layer = oras.oci.NewLayer("sig.txt", media_type="application/octet-stream")
check(client.upload_blob("sig.txt", container, sig_layer), "blob sig")
m3 = {"schemaVersion": 2, "mediaType": oras.defaults.default_manifest_media_type,
      "artifactType": T_SIG, "config": empty, "layers": [sig_layer],
      "subject": {"mediaType": subject.mediaType, "digest": d1, "size": subject.size},
      "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}
body3 = json.dumps(m3).encode()  # same bytes requests' json= would send
d3 = "sha256:" + hashlib.sha256(body3).hexdigest()
r3 = check(client.upload_manifest(m3, client.get_container(f"{HOST}/{REPO}@{d3}")), "put sig")
assert r3.headers["Docker-Content-Digest"] == d3
print("sig:", d3, "OCI-Subject:", r3.headers.get("OCI-Subject"))

# 4) pull artifact 1 back and compare
out = tempfile.mkdtemp()
files = client.pull(target=f"{HOST}/{REPO}:v1", outdir=out)
assert [os.path.basename(f) for f in files] == ["hello.txt"], files
assert open(files[0]).read() == "hello artifact\n"
print("pulled:", files)

# 5) referrers API
def referrers(query=""):
    r = requests.get(f"http://{HOST}/v2/{REPO}/referrers/{d1}{query}", auth=AUTH)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/vnd.oci.image.index.v1+json"), r.headers
    idx = r.json()
    assert idx["schemaVersion"] == 2 and idx["mediaType"] == "application/vnd.oci.image.index.v1+json"
    return r, {m["digest"]: m for m in idx["manifests"]}

_, all_ = referrers()
print(json.dumps(list(all_.values()), indent=1))
assert set(all_) == {d2, d3}, all_
assert all_[d2]["artifactType"] == T_SBOM and all_[d3]["artifactType"] == T_SIG
assert all_[d3]["annotations"]["org.opencontainers.image.created"] == "2024-01-01T00:00:00Z"
for t, want in ((T_SBOM, d2), (T_SIG, d3)):
    r, got = referrers(f"?artifactType={t}")
    assert set(got) == {want}, got
    assert r.headers.get("OCI-Filters-Applied") == "artifactType", r.headers
_, none = referrers("?artifactType=application/x-none")
assert none == {}
r = requests.get(f"http://{HOST}/v2/{REPO}/referrers/{d2}", auth=AUTH)
assert r.status_code == 200 and r.json()["manifests"] == [], r.text
print("OK")
