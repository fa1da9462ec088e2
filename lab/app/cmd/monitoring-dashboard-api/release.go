package main

// What distinguishes one release of the service from another.
const (
	// Version is printed by --version and served at /api/v1/version.
	Version = "2.0.0-perf"
	// cacheSupported: this release reads through the Redis cache (REDIS_* settings).
	cacheSupported = true
	// healthQuery is what the health check asks the database.
	healthQuery = "SELECT 1 FROM metrics LIMIT 1"
	// historyDelayMS is added to every history answer (a release that is slower, not broken).
	historyDelayMS = 0
	// historyFailPerMille of the history answers are 500 (a release that is flaky, not broken).
	historyFailPerMille = 0
)
