package jobs

import "github.com/foundry-gateway/gateway/internal/queue"

// queueMsg rebuilds the message Submit sent for j (a redelivery).
func queueMsg(j *Job) queue.Outgoing {
	return queue.Outgoing{ID: j.ID, Body: []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`),
		Properties: map[string]string{"key": j.KeyID, "op": "chat/completions", "style": "v1", "model": "m"}}
}
