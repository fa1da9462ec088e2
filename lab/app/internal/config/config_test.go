package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func lookupFrom(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultsFollowTheChecklist(t *testing.T) {
	c, err := Load(lookupFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != ":8080" || c.DBMaxOpen != 100 || c.DBMaxIdle != 50 || c.CacheTTL != time.Minute {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestEveryInvalidValueIsReported(t *testing.T) {
	_, err := Load(lookupFrom(map[string]string{"REDIS_PORT": "x", "REDIS_CACHE_TTL": "soon"}))
	if err == nil || !strings.Contains(err.Error(), "REDIS_PORT") || !strings.Contains(err.Error(), "REDIS_CACHE_TTL") {
		t.Fatalf("want both errors, got %v", err)
	}
}

func TestEnvFileDoesNotOverrideTheEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".env")
	os.WriteFile(path, []byte("# comment\nMDD_A=file   # trailing\nMDD_B=\"quoted\"\n"), 0o600)
	t.Setenv("MDD_A", "env")
	os.Unsetenv("MDD_B")
	if err := LoadEnvFile(path); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("MDD_A") != "env" || os.Getenv("MDD_B") != "quoted" {
		t.Fatalf("got A=%q B=%q", os.Getenv("MDD_A"), os.Getenv("MDD_B"))
	}
}
