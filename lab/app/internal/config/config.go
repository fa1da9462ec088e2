// Package config reads the service's settings from the environment and an optional .env file.
package config

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config holds every setting of the service; names follow the environment variables.
type Config struct {
	ListenAddr   string
	LogFile      string
	DatabaseURL  string
	DBMaxOpen    int
	DBMaxIdle    int
	RedisEnabled bool
	RedisHost    string
	RedisPort    int
	RedisPass    string
	RedisDB      int
	CacheTTL     time.Duration
	RedisPool    int
	RedisMinIdle int
	RedisDial    time.Duration
	RedisRead    time.Duration
	RedisWrite   time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
}

// LoadEnvFile sets variables from a KEY=VALUE file; variables already set win. A missing
// file is not an error.
func LoadEnvFile(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for n := 1; scanner.Scan(); n++ {
		line := strings.TrimSpace(scanner.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s:%d: expected KEY=VALUE", path, n)
		}
		key = strings.TrimSpace(key)
		if i := strings.Index(value, " #"); i >= 0 {
			value = value[:i]
		}
		value = strings.Trim(strings.TrimSpace(value), `"'`)
		if _, set := os.LookupEnv(key); !set {
			os.Setenv(key, value)
		}
	}
	return scanner.Err()
}

type reader struct {
	lookup func(string) (string, bool)
	errs   []string
}

func (r *reader) str(key, def string) string {
	if v, ok := r.lookup(key); ok && v != "" {
		return v
	}
	return def
}

func (r *reader) integer(key string, def int) int {
	v := r.str(key, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		r.errs = append(r.errs, fmt.Sprintf("%s=%q is not a non-negative integer", key, v))
	}
	return n
}

func (r *reader) boolean(key string, def bool) bool {
	v := r.str(key, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Sprintf("%s=%q is not true or false", key, v))
	}
	return b
}

func (r *reader) duration(key string, def time.Duration) time.Duration {
	v := r.str(key, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		r.errs = append(r.errs, fmt.Sprintf("%s=%q is not a duration like 5s", key, v))
	}
	return d
}

// Load reads the configuration through lookup (os.LookupEnv in the service); every invalid
// value is reported at once.
func Load(lookup func(string) (string, bool)) (Config, error) {
	r := &reader{lookup: lookup}
	c := Config{
		ListenAddr:   r.str("LISTEN_ADDR", ":8080"),
		LogFile:      r.str("LOG_FILE", "/var/log/monitoring-dashboard/app.log"),
		DatabaseURL:  r.str("DATABASE_URL", ""),
		DBMaxOpen:    r.integer("DB_MAX_OPEN_CONNS", 100),
		DBMaxIdle:    r.integer("DB_MAX_IDLE_CONNS", 50),
		RedisEnabled: r.boolean("REDIS_ENABLED", false),
		RedisHost:    r.str("REDIS_HOST", "localhost"),
		RedisPort:    r.integer("REDIS_PORT", 6379),
		RedisPass:    r.str("REDIS_PASSWORD", ""),
		RedisDB:      r.integer("REDIS_DB", 0),
		CacheTTL:     r.duration("REDIS_CACHE_TTL", 60*time.Second),
		RedisPool:    r.integer("REDIS_POOL_SIZE", 100),
		RedisMinIdle: r.integer("REDIS_MIN_IDLE_CONNS", 20),
		RedisDial:    r.duration("REDIS_DIAL_TIMEOUT", 5*time.Second),
		RedisRead:    r.duration("REDIS_READ_TIMEOUT", 3*time.Second),
		RedisWrite:   r.duration("REDIS_WRITE_TIMEOUT", 3*time.Second),
		ReadTimeout:  r.duration("SERVER_READ_TIMEOUT", 30*time.Second),
		WriteTimeout: r.duration("SERVER_WRITE_TIMEOUT", 30*time.Second),
		IdleTimeout:  r.duration("SERVER_IDLE_TIMEOUT", 120*time.Second),
	}
	if c.DatabaseURL == "" {
		host := r.str("DB_HOST", "localhost")
		port := r.str("DB_PORT", "5432")
		name := r.str("DB_NAME", "monitoring")
		user := r.str("DB_USER", "postgres")
		pass := r.str("DB_PASSWORD", "")
		sslmode := r.str("DB_SSLMODE", "disable")
		c.DatabaseURL = fmt.Sprintf("host=%s port=%s dbname=%s user=%s password='%s' sslmode=%s",
			host, port, name, user, strings.ReplaceAll(pass, "'", `\'`), sslmode)
	}
	if len(r.errs) > 0 {
		return c, fmt.Errorf("invalid configuration: %s", strings.Join(r.errs, "; "))
	}
	return c, nil
}
