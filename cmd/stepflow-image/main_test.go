package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestImage builds stepflow as `make image` does (static, version and commit stamped), writes
// the image, and then reads the layout back as a registry or a runtime would, from index.json
// down, checking every blob against its digest: the entrypoint, the user, the labels, and that
// the binary in the layer is static and runs (`stepflow version`) as the image's user.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the stepflow binary")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "stepflow")
	build := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v1.2.3 -X main.commit=0123abcd", "-o", bin, "../stepflow")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := filepath.Join(tmp, "image")
	var stdout bytes.Buffer
	if err := run([]string{"-binary", bin, "-out", out, "-version", "v1.2.3", "-commit", "0123abcd", "-created", "2026-01-02T03:04:05Z"}, &stdout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "stepflow:v1.2.3 sha256:") {
		t.Errorf("output %q names no image", stdout.String())
	}

	var lay struct {
		Version string `json:"imageLayoutVersion"`
	}
	readJSON(t, filepath.Join(out, "oci-layout"), &lay)
	if lay.Version != "1.0.0" {
		t.Errorf("oci-layout version %q", lay.Version)
	}
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	readJSON(t, filepath.Join(out, "index.json"), &index)
	if len(index.Manifests) != 1 || index.Manifests[0].MediaType != mediaManifest {
		t.Fatalf("index.json: %+v, want one image manifest", index.Manifests)
	}
	if ref := index.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; ref != "v1.2.3" {
		t.Errorf("tag %q, want v1.2.3", ref)
	}
	var manifest struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(blob(t, out, index.Manifests[0]), &manifest); err != nil {
		t.Fatal(err)
	}
	if manifest.Config.MediaType != mediaConfig || len(manifest.Layers) != 1 {
		t.Fatalf("manifest: %+v", manifest)
	}
	var config struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       struct {
			User       string            `json:"User"`
			Entrypoint []string          `json:"Entrypoint"`
			Env        []string          `json:"Env"`
			Labels     map[string]string `json:"Labels"`
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(blob(t, out, manifest.Config), &config); err != nil {
		t.Fatal(err)
	}
	c := config.Config
	if config.OS != "linux" || config.Architecture != "amd64" {
		t.Errorf("platform %s/%s", config.OS, config.Architecture)
	}
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (non-root)", c.User)
	}
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/usr/local/bin/stepflow" {
		t.Errorf("entrypoint %q", c.Entrypoint)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  "v1.2.3",
		"org.opencontainers.image.revision": "0123abcd",
		"org.opencontainers.image.source":   "https://github.com/stepflow/stepflow",
	} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if !slices.Contains(c.Env, "STEPFLOW_DATA_DIR=/var/lib/stepflow") {
		t.Errorf("env %q has no data directory", c.Env)
	}

	// The layer: its uncompressed digest is the config's diff_id; it holds the binary.
	gz := blob(t, out, manifest.Layers[0])
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(raw); len(config.RootFS.DiffIDs) != 1 || config.RootFS.DiffIDs[0] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("diff_ids %q do not match the layer", config.RootFS.DiffIDs)
	}
	files := map[string]*tar.Header{}
	var exe []byte
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = h
		if h.Name == "usr/local/bin/stepflow" {
			if exe, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	if h := files["var/lib/stepflow"]; h == nil || h.Uid != 65532 {
		t.Errorf("the data directory is missing or not the user's: %+v", h)
	}
	if h := files["tmp"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp missing or not 1777: %+v", h)
	}
	if h := files["usr/local/bin/stepflow"]; h == nil || h.Mode&0o111 == 0 {
		t.Fatalf("the binary is missing or not executable: %+v", h)
	}
	// Where the image's user can reach it: t.TempDir's directories are the test's user's only.
	runDir := t.TempDir()
	for _, d := range []string{filepath.Dir(runDir), runDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(runDir, "stepflow")
	if err := os.WriteFile(path, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader: not static")
		}
	}
	_ = f.Close()
	// Runnable by the image's user, as the image runs it.
	cmd := exec.CommandContext(t.Context(), path, "version")
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	}
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("stepflow version in the image: %v\n%s", err, got)
	}
	if !strings.Contains(string(got), "stepflow v1.2.3") || !strings.Contains(string(got), "commit 0123abcd") {
		t.Errorf("stepflow version printed %q, want v1.2.3 and 0123abcd", got)
	}
}

// blob reads a blob of the layout and checks it against its descriptor's digest and size.
func blob(t *testing.T, dir string, d descriptor) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d.Digest, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if "sha256:"+hex.EncodeToString(sum[:]) != d.Digest || int64(len(b)) != d.Size {
		t.Fatalf("blob %s: content does not match its descriptor", d.Digest)
	}
	return b
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
