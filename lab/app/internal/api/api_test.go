package api

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/xyibank/monitoring-dashboard-api/internal/store"
)

type fakeStore struct {
	calls int
	err   error
}

func (f *fakeStore) History(ctx context.Context, t string, since time.Duration, limit int) ([]store.Point, error) {
	f.calls++
	return []store.Point{{Time: time.Unix(0, 0).UTC(), Host: "web-1", Value: 0.5}}, f.err
}

func (f *fakeStore) Ping(ctx context.Context) error { return f.err }

type mapCache map[string][]byte

func (m mapCache) Get(k string) ([]byte, bool, error) { v, ok := m[k]; return v, ok, nil }
func (m mapCache) Set(k string, v []byte, ttl time.Duration) error {
	m[k] = v
	return nil
}
func (m mapCache) Close() error { return nil }

func newServer(st *fakeStore, c mapCache) *Server {
	s := &Server{Store: st, CacheTTL: time.Minute, Version: "test", Log: log.New(io.Discard, "", 0)}
	if c != nil {
		s.Cache = c
	}
	return s
}

func get(h http.Handler, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestAuthStatusAnswersTheChecklistsJSON(t *testing.T) {
	rec := get(newServer(&fakeStore{}, nil).Handler(), "/api/v1/auth/status")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"auth_enabled":false,"authenticated":true}` {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
}

func TestAuthStatusFailsWhenTheDatabaseDoes(t *testing.T) {
	rec := get(newServer(&fakeStore{err: errors.New("down")}, nil).Handler(), "/api/v1/auth/status")
	if rec.Code != 503 {
		t.Fatalf("got %d", rec.Code)
	}
}

func TestHistoryRejectsBadParametersWithJSON(t *testing.T) {
	h := newServer(&fakeStore{}, nil).Handler()
	for _, path := range []string{
		"/api/v1/metrics/history?type=gpu&duration=1h",
		"/api/v1/metrics/history?type=cpu&duration=forever",
		"/api/v1/metrics/history?type=cpu&duration=31d",
		"/api/v1/metrics/history?type=cpu",
	} {
		rec := get(h, path)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("%s: got %d %s", path, rec.Code, rec.Body)
		}
	}
}

func TestHistoryReadsThroughTheCache(t *testing.T) {
	st, c := &fakeStore{}, mapCache{}
	h := newServer(st, c).Handler()
	first := get(h, "/api/v1/metrics/history?type=cpu&duration=1h")
	second := get(h, "/api/v1/metrics/history?type=cpu&duration=1h")
	if first.Header().Get("X-Cache") != "MISS" || second.Header().Get("X-Cache") != "HIT" {
		t.Fatalf("cache headers %q %q", first.Header().Get("X-Cache"), second.Header().Get("X-Cache"))
	}
	if st.calls != 1 || first.Body.String() != second.Body.String() {
		t.Fatalf("store called %d times", st.calls)
	}
	if _, ok := c["metrics:history:cpu:1h"]; !ok {
		t.Fatalf("no metrics:* key in %v", c)
	}
}

func TestHistoryWithoutCacheAsksTheStoreEachTime(t *testing.T) {
	st := &fakeStore{}
	h := newServer(st, nil).Handler()
	get(h, "/api/v1/metrics/history?type=cpu&duration=1h")
	get(h, "/api/v1/metrics/history?type=cpu&duration=1h")
	if st.calls != 2 {
		t.Fatalf("store called %d times", st.calls)
	}
}

func TestParseDurationAcceptsDays(t *testing.T) {
	if d, ok := ParseDuration("7d"); !ok || d != 7*24*time.Hour {
		t.Fatalf("got %v %v", d, ok)
	}
}
