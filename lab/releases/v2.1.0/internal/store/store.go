// Package store reads metrics from PostgreSQL.
package store

import (
	"context"
	"database/sql"
	"time"
)

// Point is one sample.
type Point struct {
	Time  time.Time `json:"t"`
	Host  string    `json:"host"`
	Value float64   `json:"v"`
}

// Store answers the queries the API needs.
type Store interface {
	History(ctx context.Context, metricType string, since time.Duration, limit int) ([]Point, error)
	Ping(ctx context.Context) error
}

// Postgres is the Store backed by table metrics.
type Postgres struct {
	DB          *sql.DB
	HealthQuery string
}

// History returns the newest points of a type within the window, newest first.
func (p *Postgres) History(ctx context.Context, metricType string, since time.Duration, limit int) ([]Point, error) {
	rows, err := p.DB.QueryContext(ctx,
		`SELECT recorded_at, hostname, value FROM metrics
		 WHERE type = $1 AND recorded_at >= now() - $2 * interval '1 second'
		 ORDER BY recorded_at DESC, id DESC LIMIT $3`,
		metricType, int64(since.Seconds()), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	points := []Point{}
	for rows.Next() {
		var pt Point
		if err := rows.Scan(&pt.Time, &pt.Host, &pt.Value); err != nil {
			return nil, err
		}
		points = append(points, pt)
	}
	return points, rows.Err()
}

// Ping runs the release's health query.
func (p *Postgres) Ping(ctx context.Context) error {
	var one int
	return p.DB.QueryRowContext(ctx, p.HealthQuery).Scan(&one)
}
