// Command monitoring-dashboard-api serves metrics history from PostgreSQL through a Redis cache.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	_ "github.com/lib/pq"

	"github.com/xyibank/monitoring-dashboard-api/internal/api"
	"github.com/xyibank/monitoring-dashboard-api/internal/cache"
	"github.com/xyibank/monitoring-dashboard-api/internal/config"
	"github.com/xyibank/monitoring-dashboard-api/internal/store"
)

const shutdownGrace = 20 * time.Second

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	envFile := flag.String("env-file", ".env", "KEY=VALUE file read before the environment")
	flag.Parse()
	if *showVersion {
		fmt.Println("monitoring-dashboard-api", Version)
		return
	}
	if err := run(*envFile); err != nil {
		fmt.Fprintln(os.Stderr, "monitoring-dashboard-api:", err)
		os.Exit(1)
	}
}

func openLog(path string) (*log.Logger, io.Closer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, err
	}
	return log.New(io.MultiWriter(os.Stdout, f), "", log.LstdFlags|log.LUTC), f, nil
}

// logServerErrors writes an ERROR line for every 5xx answer.
func logServerErrors(next http.Handler, logger *log.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		next.ServeHTTP(rec, r)
		if rec.status >= 500 {
			logger.Printf("ERROR %s %s -> %d", r.Method, r.URL.Path, rec.status)
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func run(envFile string) error {
	if err := config.LoadEnvFile(envFile); err != nil {
		return err
	}
	cfg, err := config.Load(os.LookupEnv)
	if err != nil {
		return err
	}
	logger, logCloser, err := openLog(cfg.LogFile)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer logCloser.Close()
	logger.Printf("Starting monitoring-dashboard-api %s on %s", Version, cfg.ListenAddr)

	db, err := sql.Open("postgres", cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(cfg.DBMaxOpen)
	db.SetMaxIdleConns(cfg.DBMaxIdle)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := db.PingContext(pingCtx); err != nil {
		logger.Printf("WARN Database not reachable at start: %v", err)
	} else {
		logger.Printf("Database connection pool ready (max open %d, max idle %d)", cfg.DBMaxOpen, cfg.DBMaxIdle)
	}
	cancel()

	server := &api.Server{
		Store:        &store.Postgres{DB: db, HealthQuery: healthQuery},
		CacheTTL:     cfg.CacheTTL,
		Version:      Version,
		Log:          logger,
		SlowBy:       historyDelayMS * time.Millisecond,
		FailPerMille: historyFailPerMille,
	}
	if cacheSupported && cfg.RedisEnabled {
		redisCache, err := cache.NewRedis(cache.Options{
			Host: cfg.RedisHost, Port: cfg.RedisPort, Password: cfg.RedisPass, DB: cfg.RedisDB,
			PoolSize: cfg.RedisPool, MinIdle: cfg.RedisMinIdle, Dial: cfg.RedisDial,
			ReadTimeout: cfg.RedisRead, WriteTimeout: cfg.RedisWrite,
		})
		if err != nil {
			logger.Printf("ERROR Failed to connect to Redis at %s:%d: %v (serving from PostgreSQL)", cfg.RedisHost, cfg.RedisPort, err)
		} else {
			defer redisCache.Close()
			server.Cache = redisCache
			logger.Printf("Redis cache initialized successfully (%s:%d db %d, ttl %s)", cfg.RedisHost, cfg.RedisPort, cfg.RedisDB, cfg.CacheTTL)
		}
	} else if cacheSupported {
		logger.Printf("Redis cache disabled (REDIS_ENABLED=false)")
	}

	httpServer := &http.Server{
		Addr:         cfg.ListenAddr,
		Handler:      logServerErrors(server.Handler(), logger),
		ReadTimeout:  cfg.ReadTimeout,
		WriteTimeout: cfg.WriteTimeout,
		IdleTimeout:  cfg.IdleTimeout,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpServer.ListenAndServe() }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	logger.Printf("Shutting down: finishing in-flight requests (at most %s)", shutdownGrace)
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancelShutdown()
	if err := httpServer.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Printf("Stopped")
	return nil
}
