// Command stepflow-image writes stepflow's container image as an OCI image layout, without a
// container daemon: one layer holding the static stepflow binary, an /etc/passwd naming the
// non-root user 65532, and the directories it may write (/tmp and the data directory
// /var/lib/stepflow, which a read-only root filesystem mounts as volumes); a config with the
// binary as entrypoint, that user, and the OCI labels of its version, commit and source.
//
//	CGO_ENABLED=0 go build -o bin/stepflow-linux-amd64 ./cmd/stepflow
//	go run ./cmd/stepflow-image -binary bin/stepflow-linux-amd64 -out bin/image -version v0.3.0 -commit $(git rev-parse HEAD)
//
// `make image` does both. The layout loads into a registry or a runtime with their own tools
// (`skopeo copy oci:bin/image docker://...`, `crane push bin/image ...`). The image is the same
// for the same binary and arguments: every file's time is the commit's, given with -created.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The image's fixed choices.
const (
	// UID and GID are the user the entrypoint runs as: not root, and the number distroless
	// images give their nonroot user, so that policies written for those fit.
	UID = 65532
	GID = 65532
	// BinaryPath is where the binary is in the image, the entrypoint.
	BinaryPath = "/usr/local/bin/stepflow"
	// DataDir is the embedded store's directory (STEPFLOW_DATA_DIR), owned by the user.
	DataDir = "/var/lib/stepflow"
)

// Media types of the OCI image specification.
const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// options are the command's flags.
type options struct {
	binary, out     string
	version, commit string
	source, arch    string
	created         string
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "stepflow-image:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	var o options
	fs := flag.NewFlagSet("stepflow-image", flag.ContinueOnError)
	fs.StringVar(&o.binary, "binary", "", "the static stepflow binary (CGO_ENABLED=0) to put in the image")
	fs.StringVar(&o.out, "out", "", "directory to write the OCI image layout to (must not exist, or be empty)")
	fs.StringVar(&o.version, "version", "dev", "version for the labels and the tag (org.opencontainers.image.version)")
	fs.StringVar(&o.commit, "commit", "unknown", "commit for the labels (org.opencontainers.image.revision)")
	fs.StringVar(&o.source, "source", "https://github.com/stepflow/stepflow", "source repository for the labels")
	fs.StringVar(&o.arch, "arch", "amd64", "architecture of the binary")
	fs.StringVar(&o.created, "created", "1970-01-01T00:00:00Z", "creation time (RFC 3339) of the image and its files, such as the commit's time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.binary == "" || o.out == "" {
		return errors.New("-binary and -out are required")
	}
	digest, err := write(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: stepflow:%s %s\n", o.out, o.version, digest)
	return nil
}

// layout collects the blobs of an image layout before they are written.
type layout struct {
	blobs map[string][]byte
}

// add keeps a blob and returns its descriptor.
func (l *layout) add(media string, b []byte) descriptor {
	sum := sha256.Sum256(b)
	d := descriptor{MediaType: media, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(b))}
	l.blobs[d.Digest] = b
	return d
}

// descriptor points at a blob (OCI content descriptor).
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// write builds the image and writes its layout to o.out; it returns the manifest's digest.
func write(o options) (string, error) {
	created, err := time.Parse(time.RFC3339, o.created)
	if err != nil {
		return "", fmt.Errorf("-created %q: %w", o.created, err)
	}
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return "", fmt.Errorf("-binary: %w", err)
	}
	if !bytes.HasPrefix(bin, []byte("\x7fELF")) {
		return "", fmt.Errorf("-binary %s: not an ELF executable", o.binary)
	}
	tarball, err := layerTar(bin, created)
	if err != nil {
		return "", err
	}
	diffID := sha256.Sum256(tarball)
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(tarball); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}

	l := &layout{blobs: map[string][]byte{}}
	layer := l.add(mediaLayer, gz.Bytes())
	labels := map[string]string{
		"org.opencontainers.image.title":       "stepflow",
		"org.opencontainers.image.description": "KubeVela-compatible workflow engine: stepflow controller, stepflow server",
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.revision":    o.commit,
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.created":     created.UTC().Format(time.RFC3339),
	}
	config := map[string]any{
		"created":      created.UTC().Format(time.RFC3339),
		"architecture": o.arch,
		"os":           "linux",
		"config": map[string]any{
			"User":       fmt.Sprintf("%d:%d", UID, GID),
			"Entrypoint": []string{BinaryPath},
			"Env": []string{
				"PATH=/usr/local/bin",
				"HOME=/home/nonroot",
				"STEPFLOW_DATA_DIR=" + DataDir,
			},
			"WorkingDir":   DataDir,
			"Labels":       labels,
			"ExposedPorts": map[string]any{"8080/tcp": map[string]any{}},
		},
		"rootfs": map[string]any{
			"type":     "layers",
			"diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])},
		},
		"history": []map[string]any{{
			"created":    created.UTC().Format(time.RFC3339),
			"created_by": "stepflow-image " + o.version,
		}},
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return "", err
	}
	cfg := l.add(mediaConfig, configJSON)
	manifestJSON, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaManifest,
		"config":        cfg,
		"layers":        []descriptor{layer},
		"annotations":   labels,
	})
	if err != nil {
		return "", err
	}
	manifest := l.add(mediaManifest, manifestJSON)
	manifest.Platform = &platform{Architecture: o.arch, OS: "linux"}
	manifest.Annotations = map[string]string{"org.opencontainers.image.ref.name": o.version}
	indexJSON, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaIndex,
		"manifests":     []descriptor{manifest},
	})
	if err != nil {
		return "", err
	}
	return manifest.Digest, l.writeTo(o.out, indexJSON)
}

// writeTo writes the layout: oci-layout, index.json and blobs/sha256/<hex>.
func (l *layout) writeTo(dir string, index []byte) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("-out %s: not empty", dir)
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	for digest, b := range l.blobs {
		if err := os.WriteFile(filepath.Join(blobs, strings.TrimPrefix(digest, "sha256:")), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644)
}

// layerTar is the layer's file system, uncompressed: the directories, the binary, the user.
func layerTar(bin []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, uid int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0) },
		func() error {
			return file("etc/passwd", 0o644, fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID))
		},
		func() error { return file("etc/group", 0o644, fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", GID)) },
		func() error { return dir("home", 0o755, 0) },
		func() error { return dir("home/nonroot", 0o700, UID) },
		func() error { return dir("tmp", 0o1777, 0) },
		func() error { return dir("usr", 0o755, 0) },
		func() error { return dir("usr/local", 0o755, 0) },
		func() error { return dir("usr/local/bin", 0o755, 0) },
		func() error { return file(strings.TrimPrefix(BinaryPath, "/"), 0o755, bin) },
		func() error { return dir("var", 0o755, 0) },
		func() error { return dir("var/lib", 0o755, 0) },
		func() error { return dir(strings.TrimPrefix(DataDir, "/"), 0o700, UID) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
