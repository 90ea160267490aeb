package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Every setting exists three times: as a dotted flag (-kafka.brokers), as an
// environment variable derived from it (METAIDS_KAFKA_BROKERS) and as a YAML
// key path (kafka: {brokers: ...}). The binder derives all three from the
// config struct's yaml tags, so they cannot drift apart. Precedence:
// defaults < YAML file < environment < flags set on the command line.

// setting is one leaf field of a config struct.
type setting struct {
	name string // dotted flag name, e.g. kafka.tls.ca
	env  string // METAIDS_KAFKA_TLS_CA
	v    reflect.Value
	raw  *string // the flag's value when it was set on the command line
}

// binder ties a config struct to a FlagSet.
type binder struct {
	fs       *flag.FlagSet
	cfg      any
	settings []setting
	file     string
	check    bool
	getenv   func(string) (string, bool)
	aliases  map[string]string // alias flag → setting name
}

// bind registers one flag per leaf field of *cfg, plus -config.file and
// -config.check, whose defaults are the current field values.
func bind(fs *flag.FlagSet, cfg any) *binder {
	b := &binder{fs: fs, cfg: cfg, getenv: os.LookupEnv}
	fs.StringVar(&b.file, "config.file", "", "YAML configuration file (keys as the flag names, nested at the dots); METAIDS_CONFIG_FILE")
	fs.BoolVar(&b.check, "config.check", false, "validate the configuration, print OK and exit")
	// Aliases operators coming from other tools type by habit.
	fs.StringVar(&b.file, "config", "", "alias of -config.file")
	fs.BoolVar(&b.check, "check-config", false, "alias of -config.check")
	b.walk(reflect.ValueOf(cfg).Elem(), "")
	// A URL setting also answers to its group's name, so
	// --schema-registry URL works as Confluent's tools spell it.
	b.aliases = map[string]string{}
	for _, s := range b.settings {
		if group, ok := strings.CutSuffix(s.name, ".url"); ok && fs.Lookup(group) == nil && fs.Lookup(s.name) != nil {
			fs.Var(fs.Lookup(s.name).Value, group, "alias of -"+s.name)
			b.aliases[group] = s.name
		}
	}
	return b
}

func (b *binder) walk(v reflect.Value, prefix string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "-" {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		name := tag
		if prefix != "" {
			name = prefix + "." + tag
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			if strings.Contains(f.Tag.Get("yaml"), ",inline") {
				b.walk(fv, prefix)
			} else {
				b.walk(fv, name)
			}
			continue
		}
		if !settable(f.Type) {
			continue
		}
		s := setting{name: name, env: envName(name), v: fv, raw: new(string)}
		if f.Type.Name() == "Secret" {
			// Secrets come from the environment or the YAML file (or a
			// *-file setting), never from a flag: a flag shows in ps and in
			// shell history.
			b.settings = append(b.settings, s)
			continue
		}
		help := f.Tag.Get("help")
		if help == "" {
			help = "see the configuration reference in README.md"
		}
		b.fs.Var(&rawValue{s: s}, name, help+"; "+s.env)
		b.settings = append(b.settings, s)
	}
}

func envName(flagName string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return "METAIDS_" + strings.ToUpper(r.Replace(flagName))
}

// load parses args and applies the layers in precedence order. Errors name the
// setting the user typed.
func (b *binder) load(args []string) error {
	if err := b.fs.Parse(args); err != nil {
		return err
	}
	file := b.file
	if file == "" {
		if f, ok := b.getenv("METAIDS_CONFIG_FILE"); ok {
			file = f
		}
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("-config.file: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true) // an unknown key is a typo, not something to ignore
		// An empty file decodes to io.EOF: that is a valid, empty configuration.
		if err := dec.Decode(b.cfg); err != nil && !errors.Is(err, io.EOF) {
			return yamlError(file, data, err)
		}
	}
	var errs []error
	for _, s := range b.settings {
		if v, ok := b.getenv(s.env); ok {
			if err := setFromString(s.v, v); err != nil {
				errs = append(errs, fmt.Errorf("%s (-%s): %w", s.env, s.name, err))
			}
		}
	}
	visited := map[string]bool{}
	b.fs.Visit(func(f *flag.Flag) {
		visited[f.Name] = true
		if name, ok := b.aliases[f.Name]; ok {
			visited[name] = true
		}
	})
	for _, s := range b.settings {
		if visited[s.name] {
			if err := setFromString(s.v, *s.raw); err != nil {
				errs = append(errs, fmt.Errorf("-%s: %w", s.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// yamlError names the setting behind each of a YAML decoding error's
// lines: yaml.v3 says "line 3: field bach not found in type
// ingest.Settings" or "cannot unmarshal !!str `soon` into time.Duration",
// but a person needs to know it was ingest.bach (-ingest.bach) or
// -kafka.timeout. The keys' dotted paths come from the document itself.
func yamlError(file string, data []byte, err error) error {
	var root yaml.Node
	paths := map[int]string{}
	if yaml.Unmarshal(data, &root) == nil {
		var walk func(n *yaml.Node, prefix string)
		walk = func(n *yaml.Node, prefix string) {
			switch n.Kind {
			case yaml.DocumentNode:
				for _, c := range n.Content {
					walk(c, prefix)
				}
			case yaml.MappingNode:
				for i := 0; i+1 < len(n.Content); i += 2 {
					k, v := n.Content[i], n.Content[i+1]
					path := k.Value
					if prefix != "" {
						path = prefix + "." + k.Value
					}
					paths[k.Line] = path
					if v.Line != k.Line || v.Kind == yaml.ScalarNode || v.Kind == yaml.SequenceNode {
						for _, l := range valueLines(v) {
							if _, ok := paths[l]; !ok {
								paths[l] = path
							}
						}
					}
					walk(v, path)
				}
			}
		}
		walk(&root, "")
	}
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var errs []error
	for _, m := range msgs {
		var line int
		if _, scanErr := fmt.Sscanf(m, "line %d:", &line); scanErr == nil {
			if path, ok := paths[line]; ok {
				errs = append(errs, fmt.Errorf("-config.file %s line %d: -%s: %s", file, line, path, strings.TrimSpace(m[strings.Index(m, ":")+1:])))
				continue
			}
		}
		errs = append(errs, fmt.Errorf("-config.file %s: %s", file, m))
	}
	return errors.Join(errs...)
}

// valueLines lists the lines a YAML value spans (a sequence's items).
func valueLines(n *yaml.Node) []int {
	lines := []int{n.Line}
	for _, c := range n.Content {
		lines = append(lines, valueLines(c)...)
	}
	return lines
}

// rawValue records the command-line string and checks that it parses, so a
// bad flag fails at parse time with the flag package's own message.
type rawValue struct{ s setting }

func (r *rawValue) String() string {
	if r == nil || !r.s.v.IsValid() {
		return ""
	}
	return formatValue(r.s.v)
}

func (r *rawValue) Set(v string) error {
	probe := reflect.New(r.s.v.Type()).Elem()
	if err := setFromString(probe, v); err != nil {
		return err
	}
	*r.s.raw = v
	return nil
}

func (r *rawValue) IsBoolFlag() bool { return r.s.v.IsValid() && r.s.v.Kind() == reflect.Bool }

func settable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	case reflect.Map:
		return t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.String
	}
	return false
}

func setFromString(v reflect.Value, s string) error {
	if v.Type() == reflect.TypeOf(time.Duration(0)) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration like 50ms or 30s, got %q", s)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		x, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(x)
	case reflect.Int, reflect.Int32, reflect.Int64:
		x, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		v.SetInt(x)
	case reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		x, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want a non-negative integer, got %q", s)
		}
		v.SetUint(x)
	case reflect.Float32, reflect.Float64:
		x, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want a number, got %q", s)
		}
		v.SetFloat(x)
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	case reflect.Map:
		m := map[string]string{}
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			k, val, ok := strings.Cut(p, "=")
			if !ok {
				return fmt.Errorf("want key=value pairs separated by commas, got %q", p)
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		v.Set(reflect.ValueOf(m))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

func formatValue(v reflect.Value) string {
	if v.Type() == reflect.TypeOf(time.Duration(0)) {
		return time.Duration(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = v.Index(i).String()
		}
		return strings.Join(parts, ",")
	case reflect.Map:
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String()+"="+v.MapIndex(k).String())
		}
		sort.Strings(keys)
		return strings.Join(keys, ",")
	}
	return fmt.Sprint(v.Interface())
}

// joinMulti merges the values of each named flag into one comma-separated
// -name=v1,v2 at the place of its first occurrence. A value is the text
// after '=', or else every following argument up to the next one that
// starts with '-': the flag package keeps only the last value of a repeated
// flag and stops at the first non-flag argument.
func joinMulti(args []string, names ...string) []string {
	out := make([]string, 0, len(args))
	first := map[string]int{}
	vals := map[string][]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !contains(names, name) {
			out = append(out, a)
			continue
		}
		var got []string
		if hasVal {
			got = []string{val}
		} else {
			for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				got = append(got, args[i])
			}
			if len(got) == 0 {
				out = append(out, a) // let the flag package report the missing value
				continue
			}
		}
		if _, ok := first[name]; !ok {
			first[name] = len(out)
			out = append(out, "")
		}
		vals[name] = append(vals[name], got...)
	}
	for name, at := range first {
		out[at] = "-" + name + "=" + strings.Join(vals[name], ",")
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
