module github.com/xyibank/monitoring-dashboard-api

go 1.19

require (
	github.com/gomodule/redigo v1.8.3
	github.com/lib/pq v1.10.7
)
