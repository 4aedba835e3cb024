// Package config loads the gateway's one configuration file (YAML or JSON),
// applies defaults in one place, resolves secrets from environment variables
// and validates the result.
//
// Every environment variable the gateway reads in serve mode is read here,
// through the getenv function passed to Load, so the set of settings is
// derived from code (tests record it) rather than kept by hand. It must not
// depend on other gateway packages.
package config
