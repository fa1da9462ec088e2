// Package cache is the read-through Redis cache of the history endpoint.
package cache

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Cache stores encoded responses for a while.
type Cache interface {
	Get(key string) ([]byte, bool, error)
	Set(key string, value []byte, ttl time.Duration) error
	Close() error
}

// HistoryKey names the cached answer of one history query; every key starts with "metrics:".
func HistoryKey(metricType, duration string) string {
	return fmt.Sprintf("metrics:history:%s:%s", metricType, duration)
}

// Options are the REDIS_* settings.
type Options struct {
	Host, Password                 string
	Port, DB, PoolSize, MinIdle    int
	Dial, ReadTimeout, WriteTimeout time.Duration
}

// Redis is a Cache backed by a redigo connection pool.
type Redis struct{ pool *redis.Pool }

// NewRedis builds the pool and checks that Redis answers PING.
func NewRedis(o Options) (*Redis, error) {
	addr := net.JoinHostPort(o.Host, strconv.Itoa(o.Port))
	pool := &redis.Pool{
		MaxActive:   o.PoolSize,
		MaxIdle:     o.MinIdle,
		IdleTimeout: 5 * time.Minute,
		Wait:        true,
		Dial: func() (redis.Conn, error) {
			return redis.Dial("tcp", addr,
				redis.DialPassword(o.Password),
				redis.DialDatabase(o.DB),
				redis.DialConnectTimeout(o.Dial),
				redis.DialReadTimeout(o.ReadTimeout),
				redis.DialWriteTimeout(o.WriteTimeout))
		},
	}
	conn := pool.Get()
	defer conn.Close()
	if _, err := conn.Do("PING"); err != nil {
		pool.Close()
		return nil, err
	}
	return &Redis{pool: pool}, nil
}

// Get returns the value and whether it was there.
func (r *Redis) Get(key string) ([]byte, bool, error) {
	conn := r.pool.Get()
	defer conn.Close()
	value, err := redis.Bytes(conn.Do("GET", key))
	if err == redis.ErrNil {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return value, true, nil
}

// Set stores the value for ttl.
func (r *Redis) Set(key string, value []byte, ttl time.Duration) error {
	conn := r.pool.Get()
	defer conn.Close()
	ms := ttl.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	_, err := conn.Do("SET", key, value, "PX", ms)
	return err
}

// Close releases the pool.
func (r *Redis) Close() error { return r.pool.Close() }
