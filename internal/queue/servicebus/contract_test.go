package servicebus_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"

	"github.com/foundry-gateway/gateway/internal/queue"
	"github.com/foundry-gateway/gateway/internal/queue/queuetest"
	"github.com/foundry-gateway/gateway/internal/queue/servicebus"
)

// TestContract runs the queue suite against a real namespace (or the Service
// Bus emulator) when SERVICEBUS_CONNECTION_STRING is set. The queue
// (SERVICEBUS_QUEUE, default lowpri-test) must exist; give it a short lock
// duration (5 s) to keep the real-time waits short. Lock duration and maximum
// delivery count are read from the entity (needs Manage rights), or from
// SERVICEBUS_LOCK_DURATION (a Go duration) and SERVICEBUS_MAX_DELIVERY_COUNT.
func TestContract(t *testing.T) {
	cs := os.Getenv("SERVICEBUS_CONNECTION_STRING")
	if cs == "" {
		t.Skip("SERVICEBUS_CONNECTION_STRING not set: the Service Bus contract tests were SKIPPED (no emulator runs here)")
	}
	name := os.Getenv("SERVICEBUS_QUEUE")
	if name == "" {
		name = "lowpri-test"
	}
	lock, maxDeliveries := entitySettings(t, cs, name)
	t.Logf("queue %s: lock duration %v, max delivery count %d", name, lock, maxDeliveries)
	queuetest.Run(t, func(t *testing.T) queue.Queue {
		q, err := servicebus.New(t.Context(), servicebus.Options{ConnectionString: cs, Queue: name})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return q
	}, queuetest.Caps{LockDuration: lock, MaxDeliveryCount: maxDeliveries, Shared: true})
}

// entitySettings reads the queue's lock duration and max delivery count.
func entitySettings(t *testing.T, cs, name string) (time.Duration, int) {
	t.Helper()
	var (
		lock          time.Duration
		maxDeliveries int
		err           error
	)
	if v := os.Getenv("SERVICEBUS_LOCK_DURATION"); v != "" {
		if lock, err = time.ParseDuration(v); err != nil {
			t.Fatalf("SERVICEBUS_LOCK_DURATION: %v", err)
		}
	}
	if v := os.Getenv("SERVICEBUS_MAX_DELIVERY_COUNT"); v != "" {
		if maxDeliveries, err = strconv.Atoi(v); err != nil {
			t.Fatalf("SERVICEBUS_MAX_DELIVERY_COUNT: %v", err)
		}
	}
	if lock > 0 && maxDeliveries > 0 {
		return lock, maxDeliveries
	}
	ac, err := admin.NewClientFromConnectionString(cs, nil)
	if err != nil {
		t.Fatalf("admin client: %v (or set SERVICEBUS_LOCK_DURATION and SERVICEBUS_MAX_DELIVERY_COUNT)", err)
	}
	resp, err := ac.GetQueue(t.Context(), name, nil)
	if err != nil || resp == nil {
		t.Fatalf("GetQueue(%s): %v, response %v (or set SERVICEBUS_LOCK_DURATION and SERVICEBUS_MAX_DELIVERY_COUNT)", name, err, resp)
	}
	if lock == 0 && resp.LockDuration != nil {
		if lock, err = parseISODuration(*resp.LockDuration); err != nil {
			t.Fatalf("lock duration of %s: %v", name, err)
		}
	}
	if maxDeliveries == 0 && resp.MaxDeliveryCount != nil {
		maxDeliveries = int(*resp.MaxDeliveryCount)
	}
	return lock, maxDeliveries
}

// parseISODuration reads the ISO 8601 durations Service Bus reports for
// entity settings: P[nD]T[nH][nM][n[.n]S].
func parseISODuration(s string) (time.Duration, error) {
	rest, ok := strings.CutPrefix(s, "P")
	if !ok || rest == "" {
		return 0, fmt.Errorf("%q is not an ISO 8601 duration", s)
	}
	var d time.Duration
	inTime := false
	num := ""
	for _, c := range rest {
		switch {
		case c == 'T':
			inTime = true
		case c >= '0' && c <= '9' || c == '.':
			num += string(c)
		default:
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("%q is not an ISO 8601 duration", s)
			}
			unit := map[rune]time.Duration{'D': 24 * time.Hour}
			if inTime {
				unit = map[rune]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second}
			}
			u, ok := unit[c]
			if !ok {
				return 0, fmt.Errorf("%q: unit %c not supported", s, c)
			}
			d += time.Duration(f * float64(u))
			num = ""
		}
	}
	if num != "" {
		return 0, fmt.Errorf("%q ends in a number without a unit", s)
	}
	return d, nil
}

func TestParseISODuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"PT1M", time.Minute, false},
		{"PT5S", 5 * time.Second, false},
		{"PT1M30S", 90 * time.Second, false},
		{"PT0.5S", 500 * time.Millisecond, false},
		{"P1DT1H", 25 * time.Hour, false},
		{"1m", 0, true},
		{"PT5", 0, true},
		{"P", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseISODuration(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error: got %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
