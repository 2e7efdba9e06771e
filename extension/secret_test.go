package extension_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/google/go-cmp/cmp"
)

const redacted = "[redacted]"

// credentials is how a secret typically travels: as an exported field of a struct.
type credentials struct {
	InstanceID string
	Secret     extension.Secret
	Token      *extension.Secret
}

func TestSecretRedactedByFmt(t *testing.T) {
	const plain = "Qx7mT2vLp9RkW4sNz8bYc3HfJ6dGa1EoUiVtX5yKqZr"
	s := extension.Secret(plain)
	c := credentials{InstanceID: "i-1", Secret: s, Token: &s}
	tests := []struct {
		name string
		got  string
	}{
		{"%s", fmt.Sprintf("%s", s)},
		{"%v", fmt.Sprintf("%v", s)},
		{"%+v", fmt.Sprintf("%+v", s)},
		{"%#v", fmt.Sprintf("%#v", s)},
		{"%q", fmt.Sprintf("%q", s)},
		{"%x", fmt.Sprintf("%x", s)},
		{"%X", fmt.Sprintf("%X", s)},
		{"%10.3s", fmt.Sprintf("%10.3s", s)},
		{"pointer %v", fmt.Sprintf("%v", &s)},
		{"pointer %s", fmt.Sprintf("%s", &s)},
		{"Sprint", fmt.Sprint(s)},
		{"Sprintln", fmt.Sprintln("secret", s)},
		{"Errorf %v", fmt.Errorf("load instance: %v", s).Error()},
		{"Errorf %s wrapped", fmt.Errorf("outer: %w", fmt.Errorf("inner %s", s)).Error()},
		{"errors.Join", errors.Join(fmt.Errorf("a %v", s), fmt.Errorf("b %q", s)).Error()},
		{"struct %v", fmt.Sprintf("%v", c)},
		{"struct %+v", fmt.Sprintf("%+v", c)},
		{"struct %#v", fmt.Sprintf("%#v", c)},
		{"struct pointer %+v", fmt.Sprintf("%+v", &c)},
		{"slice %v", fmt.Sprintf("%v", []extension.Secret{s, s})},
		{"map %v", fmt.Sprintf("%v", map[string]extension.Secret{"k": s})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.got, plain) {
				t.Errorf("got %q, which contains the secret", tt.got)
			}
			if !strings.Contains(tt.got, redacted) {
				t.Errorf("got %q, want it to contain %q", tt.got, redacted)
			}
		})
	}
}

func TestSecretRedactedBySlog(t *testing.T) {
	const plain = "Qx7mT2vLp9RkW4sNz8bYc3HfJ6dGa1EoUiVtX5yKqZr"
	s := extension.Secret(plain)
	c := credentials{InstanceID: "i-1", Secret: s, Token: &s}
	handlers := []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
	}
	logs := []struct {
		name string
		log  func(*slog.Logger)
	}{
		{"attr value", func(l *slog.Logger) { l.Info("rotated", "secret", s) }},
		{"slog.Any", func(l *slog.Logger) { l.Info("rotated", slog.Any("secret", s)) }},
		{"pointer", func(l *slog.Logger) { l.Info("rotated", slog.Any("secret", &s)) }},
		{"struct with slog.Any", func(l *slog.Logger) { l.Info("rotated", slog.Any("credentials", c)) }},
		{"struct pointer with slog.Any", func(l *slog.Logger) { l.Info("rotated", slog.Any("credentials", &c)) }},
		{"group", func(l *slog.Logger) { l.Info("rotated", slog.Group("instance", "id", "i-1", "secret", s)) }},
		{"With", func(l *slog.Logger) { l.With("secret", s).Info("rotated") }},
		{"message", func(l *slog.Logger) { l.Info(fmt.Sprint("rotated ", s)) }},
	}
	for _, h := range handlers {
		for _, lg := range logs {
			t.Run(h.name+"/"+lg.name, func(t *testing.T) {
				var buf bytes.Buffer
				lg.log(slog.New(h.new(&buf)))
				got := buf.String()
				if strings.Contains(got, plain) {
					t.Errorf("got %q, which contains the secret", got)
				}
				if !strings.Contains(got, redacted) {
					t.Errorf("got %q, want it to contain %q", got, redacted)
				}
			})
		}
	}
}

func TestSecretRedactedByJSON(t *testing.T) {
	const plain = "Qx7mT2vLp9RkW4sNz8bYc3HfJ6dGa1EoUiVtX5yKqZr"
	s := extension.Secret(plain)
	tests := []struct {
		name string
		in   any
		want any // what the JSON decodes to
	}{
		{"bare", s, redacted},
		{"pointer", &s, redacted},
		{
			"struct field",
			credentials{InstanceID: "i-1", Secret: s, Token: &s},
			map[string]any{"InstanceID": "i-1", "Secret": redacted, "Token": redacted},
		},
		{"map value", map[string]extension.Secret{"k": s}, map[string]any{"k": redacted}},
		{"slice", []extension.Secret{s}, []any{redacted}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.in)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if bytes.Contains(b, []byte(plain)) {
				t.Errorf("got %s, which contains the secret", b)
			}
			var got any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("unmarshal %s: %v", b, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decoded JSON mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSecretRedactedByMarshalText(t *testing.T) {
	got, err := extension.Secret("plain-secret-value").MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != redacted {
		t.Errorf("got %q, want %q", got, redacted)
	}
}

func TestSecretReveal(t *testing.T) {
	tests := []struct {
		name     string
		plain    string
		wantZero bool
	}{
		{"typical", "Qx7mT2vLp9RkW4sNz8bYc3HfJ6dGa1EoUiVtX5yKqZr", false},
		{"looks like the placeholder", redacted, false},
		{"unicode", "gehéim—秘密", false},
		{"empty", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := extension.Secret(tt.plain)
			if got := s.Reveal(); got != tt.plain {
				t.Errorf("Reveal() got %q, want %q", got, tt.plain)
			}
			if got := s.IsZero(); got != tt.wantZero {
				t.Errorf("IsZero() got %v, want %v", got, tt.wantZero)
			}
		})
	}
}
