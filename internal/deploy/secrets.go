package deploy

import (
	"fmt"
	"regexp"
)

// azuriteKeyReversed is the public key of the Azurite development account
// devstoreaccount1, reversed. The key grants nothing, but a package that
// contains it carries local-only settings and must not be deployed. It is kept
// reversed so that the handler binary, which links this package for
// `handler package`, does not contain it and fail its own check.
const azuriteKeyReversed = "==wGMGoskeBHBK/rtOTPFZS1K/qt6I4zCrEVU2qFusFI6ZRSu05TFzUO1JXDCltEmlLPJwUqlFqcONx20Mdv8ybE"

// azuriteAccountKey returns the Azurite development account key.
func azuriteAccountKey() string {
	b := []byte(azuriteKeyReversed)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// secretPattern is a kind of credential that must never be in a package or
// in the infrastructure templates.
type secretPattern struct {
	what string
	re   *regexp.Regexp
}

// secretPatterns match values, not the names of settings that hold them:
// "apiKeyEnv: SWC_KEY" or "AccountKey=<placeholder>" pass.
var secretPatterns = []secretPattern{
	{"storage account key", regexp.MustCompile(`(?i)AccountKey\s*=\s*[^\s;<>"'$]{8,}`)},
	{"shared access key", regexp.MustCompile(`(?i)SharedAccessKey\s*=\s*[^\s;<>"'$]{8,}`)},
	{"shared access signature", regexp.MustCompile(`(?i)(?:[?&]|\b)sig=[A-Za-z0-9%+/=]{16,}`)},
	{"instrumentation key (connection strings belong in app settings)", regexp.MustCompile(`(?i)InstrumentationKey\s*=\s*[0-9a-f]{8}-[0-9a-f]{4}-`)},
	{"api key", regexp.MustCompile(`(?i)\bapi[-_]?key["']?\s*[:=]\s*["']?[A-Za-z0-9_\-]{20,}`)},
	{"OpenAI-style secret key", regexp.MustCompile(`\bsk-[A-Za-z0-9_\-]{20,}`)},
	{"JSON web token", regexp.MustCompile(`\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}`)},
	{"private key", regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`)},
	{"long base64 value after a key-like name", regexp.MustCompile(`(?i)(?:key|secret|password|passwd|token|credential)[A-Za-z0-9_]*["']?\s*[:=]\s*["']?[A-Za-z0-9+/]{32,}={0,2}`)},
}

// scanSecrets reports every secret-looking string in a text file.
func scanSecrets(name string, data []byte) []error {
	var errs []error
	for _, p := range secretPatterns {
		if loc := p.re.FindIndex(data); loc != nil {
			line := 1
			for _, c := range data[:loc[0]] {
				if c == '\n' {
					line++
				}
			}
			errs = append(errs, fmt.Errorf("%s:%d: looks like a %s; secrets belong in Key Vault or, better, managed identity", name, line, p.what))
		}
	}
	return errs
}
