package stream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// transient reports whether err may go away on retry: a broker moving
// leadership, a timeout, a dropped connection. Authentication failures,
// oversized messages and cancellation are permanent.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		seen := false
		for _, e := range werrs {
			if e == nil {
				continue
			}
			if !transient(e) {
				return false
			}
			seen = true
		}
		return seen
	}
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		return kerr.Temporary()
	}
	if securityError(err) {
		return false
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true // a broker's name may not resolve until its pod is up
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// backoff returns the wait before retry attempt (0-based): min doubled per
// attempt, capped at max.
func backoff(attempt int, min, max time.Duration) time.Duration {
	d := min
	for range attempt {
		d *= 2
		if d >= max || d <= 0 {
			return max
		}
	}
	return d
}

// sleep waits d or until ctx is done, and reports whether it waited fully.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// securityError reports failures of authentication, authorisation or TLS
// verification: configuration problems that no retry can fix, which must
// stop a stage at once with an error that says so.
func securityError(err error) bool {
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		switch kerr {
		case kafka.SASLAuthenticationFailed, kafka.UnsupportedSASLMechanism, kafka.IllegalSASLState,
			kafka.TopicAuthorizationFailed, kafka.GroupAuthorizationFailed, kafka.ClusterAuthorizationFailed,
			kafka.TransactionalIDAuthorizationFailed, kafka.DelegationTokenAuthorizationFailed:
			return true
		}
		return false
	}
	var (
		unknownCA x509.UnknownAuthorityError
		badHost   x509.HostnameError
		badCert   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		alert     tls.AlertError
		notTLS    tls.RecordHeaderError
	)
	return errors.As(err, &unknownCA) || errors.As(err, &badHost) || errors.As(err, &badCert) ||
		errors.As(err, &verify) || errors.As(err, &alert) || errors.As(err, &notTLS)
}

// probe dials the brokers in turn with d, authenticating as configured,
// and returns nil once one answers, else the last failure. kafka-go's
// Transport, which Writers and Clients use, reports a rejected SASL login
// as "unexpected EOF" or "Broker Not Available"; the Dialer reports the
// cause, so callers probe to explain a failure.
func probe(ctx context.Context, d *kafka.Dialer, brokers []string) error {
	var last error
	for _, b := range brokers {
		conn, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			conn.Close()
			return nil
		}
		last = fmt.Errorf("connect to %s: %w", b, err)
	}
	return last
}
