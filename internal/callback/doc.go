// Package callback decides where job callbacks may go and signs them: the
// URL check at submission (public https destinations only, unless the
// config's allow-list permits a host or network), the same check on the
// resolved address at dial time (DNS rebinding), and the timestamped
// HMAC signature receivers verify. It depends only on the standard library.
//
// It must not depend on the jobs store or the queue: internal/jobs uses it.
package callback
