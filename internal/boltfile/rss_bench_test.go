package boltfile

import "testing"

func BenchmarkFileRSS(b *testing.B) {
	for b.Loop() {
		if fileRSS() <= 0 {
			b.Fatal("no rss")
		}
	}
}
