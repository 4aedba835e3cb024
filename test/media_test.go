package test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

// TestImagesAndAudioWithOfficialSDK passes images/generations,
// audio/speech and audio/transcriptions (multipart, model rewritten to the
// deployment) through the gateway with the official openai-go client in
// both styles, and finds the usage the backend reported in the ledger.
func TestImagesAndAudioWithOfficialSDK(t *testing.T) {
	s := startStack(t, stackOptions{extraModels: `  media:
    targets:
      - { backend: sim-paygo, deployment: gpt-4o-mini }`})
	ctx := context.Background()
	for name, c := range clients(s) {
		if name == "v1-short" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			img, err := c.Images.Generate(ctx, openai.ImageGenerateParams{Model: "media", Prompt: "a lighthouse at dusk", N: openai.Int(2)})
			if err != nil {
				t.Fatalf("images: %v", err)
			}
			if len(img.Data) != 2 || img.Data[0].B64JSON == "" || img.Usage.OutputTokens != 2*1056 || img.Usage.InputTokens == 0 {
				t.Errorf("images: %d images, usage %+v", len(img.Data), img.Usage)
			}
			sp, err := c.Audio.Speech.New(ctx, openai.AudioSpeechNewParams{Model: "media", Input: "Hello from the gateway", Voice: openai.AudioSpeechNewParamsVoiceUnion{OfString: openai.String("alloy")}})
			if err != nil {
				t.Fatalf("speech: %v", err)
			}
			audio, _ := io.ReadAll(sp.Body)
			sp.Body.Close()
			if sp.Header.Get("Content-Type") != "audio/mpeg" || !bytes.HasPrefix(audio, []byte("ID3")) {
				t.Errorf("speech: %s, %d bytes", sp.Header.Get("Content-Type"), len(audio))
			}
			file := openai.File(bytes.NewReader(bytes.Repeat([]byte{1}, 6400)), "hello.wav", "audio/wav")
			tr, err := c.Audio.Transcriptions.New(ctx, openai.AudioTranscriptionNewParams{Model: "media", File: file})
			if err != nil {
				t.Fatalf("transcription: %v", err)
			}
			if tr.Text != "A recording of 6400 bytes." || tr.Usage.InputTokens != 101 {
				t.Errorf("transcription: %q usage %+v", tr.Text, tr.Usage)
			}
		})
	}
	// The ledger has the reported usage of the image and transcription
	// calls (per client: 2112+ output tokens for images, 101 input tokens
	// for the transcription); speech reports none.
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/gateway/admin/usage?by=model&format=json", nil)
		req.Header.Set("api-key", s.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var rep struct {
			Rows []struct {
				Model             string `json:"model"`
				Requests          int64  `json:"requests"`
				EstimatedRequests int64  `json:"estimatedRequests"`
				PromptTokens      int64  `json:"promptTokens"`
				CompletionTokens  int64  `json:"completionTokens"`
			} `json:"rows"`
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = json.Unmarshal(b, &rep)
		for _, r := range rep.Rows {
			// Two clients × (2 images of 1056 tokens + a 7-token transcript);
			// prompts: the image prompt and 101 audio tokens each.
			if r.Model == "media" && r.Requests == 6 {
				if r.CompletionTokens != 2*(2*1056+7) || r.PromptTokens < 2*101 || r.EstimatedRequests != 2 {
					t.Errorf("ledger row %+v: want the reported usage, speech as the 2 estimated (unreported) calls", r)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage of the media model never reached the ledger: %s", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
