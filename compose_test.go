package herald_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeFile parses docker-compose.yml with the Compose specification's own loader
// (no Docker engine needed) and checks how Herald is wired.
func TestComposeFile(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"docker-compose.yml"}, cli.WithWorkingDirectory("."), cli.WithName("herald"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	for _, name := range []string{"postgres", "kafka", "mailpit", "herald"} {
		s, ok := p.Services[name]
		if !ok {
			t.Fatalf("service %s missing", name)
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("service %s has no health check", name)
		}
	}
	h := p.Services["herald"]
	if h.Build == nil || h.Build.Dockerfile != "Dockerfile" {
		t.Errorf("herald is not built from the Dockerfile: %+v", h.Build)
	}
	for _, dep := range []string{"postgres", "kafka"} {
		if d, ok := h.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("herald does not wait for %s to be healthy", dep)
		}
	}
	env := func(k string) string {
		if v := h.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	if env("HERALD_KAFKA_BROKERS") != "kafka:9092" || !strings.HasPrefix(env("HERALD_DB_URL"), "postgres://herald:herald@postgres:5432/") {
		t.Errorf("herald is not wired for Kafka mode on PostgreSQL: %v", h.Environment)
	}
	if adv := p.Services["kafka"].Environment["KAFKA_PROCESS_ROLES"]; adv == nil || *adv != "broker,controller" {
		t.Errorf("kafka is not in KRaft mode")
	}
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"AS build", "go build", "./cmd/herald", "COPY --from=build"} {
		if !strings.Contains(string(dockerfile), want) {
			t.Errorf("Dockerfile lacks %q (multi-stage build of cmd/herald)", want)
		}
	}
}
