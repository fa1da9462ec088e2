package cache

import "testing"

func TestHistoryKeysLiveUnderMetricsPrefix(t *testing.T) {
	if got := HistoryKey("cpu", "1h"); got != "metrics:history:cpu:1h" {
		t.Fatalf("got %q", got)
	}
}
