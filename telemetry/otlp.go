package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// ServiceName is the service.name of the spans stepflow exports.
const ServiceName = "stepflow"

// OTLP returns a TracerProvider that exports spans in batches over OTLP/HTTP (protobuf) to
// endpoint, with the resource service.name=stepflow (OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES apply over it, as the exporter's OTEL_EXPORTER_OTLP_* variables do
// for what endpoint does not say). endpoint is host:port, the spans going to /v1/traces over
// HTTPS, or plain HTTP when insecure is set; or a URL, http://collector:4318 or
// https://collector/custom/path, whose scheme decides (insecure is then ignored) and whose path,
// if any, replaces /v1/traces. Nothing is sent until a span ends, and a collector that cannot be
// reached does not fail OTLP. The caller shuts the provider down at exit: Shutdown sends the
// spans not sent yet.
func OTLP(ctx context.Context, endpoint string, insecure bool) (*sdktrace.TracerProvider, error) {
	var opts []otlptracehttp.Option
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil {
			return nil, fmt.Errorf("OTLP endpoint: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("OTLP endpoint %q: want host:port, or an http or https URL", endpoint)
		}
		opts = append(opts, otlptracehttp.WithEndpoint(u.Host))
		if u.Scheme == "http" {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if u.Path != "" && u.Path != "/" {
			opts = append(opts, otlptracehttp.WithURLPath(u.Path))
		}
	} else {
		if endpoint == "" {
			return nil, fmt.Errorf("OTLP endpoint: empty; want host:port or a URL")
		}
		opts = append(opts, otlptracehttp.WithEndpoint(endpoint))
		if insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(ServiceName)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("OTLP resource: %w", err)
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter to %s: %w", endpoint, err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
