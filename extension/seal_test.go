package extension_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
)

// realisticSecret has the shape of the platform's example secret (43 characters).
const realisticSecret = "Qx7mT2vLp9RkW4sNz8bYc3HfJ6dGa1EoUiVtX5yKqZr"

func newKeyring(t testing.TB, keys ...[]byte) *extension.Keyring {
	t.Helper()
	kr, err := extension.NewKeyring(keys)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

func seal(t testing.TB, kr *extension.Keyring, plain extension.Secret, aad string) string {
	t.Helper()
	sealed, err := kr.Seal(plain, aad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return sealed
}

// splitSealed cuts a sealed value into its text head ("v1.KEYID.") and its decoded body.
func splitSealed(t testing.TB, sealed string) (string, []byte) {
	t.Helper()
	i := strings.LastIndexByte(sealed, '.')
	if i < 0 {
		t.Fatalf("sealed value %q has no '.'", sealed)
	}
	body, err := base64.RawURLEncoding.DecodeString(sealed[i+1:])
	if err != nil {
		t.Fatalf("sealed value %q: body is not base64: %v", sealed, err)
	}
	return sealed[:i+1], body
}

func TestSealOpenRoundTrip(t *testing.T) {
	kr := newKeyring(t, extensiontest.Key(t))
	tests := []struct {
		name  string
		plain extension.Secret
	}{
		{"empty", ""},
		{"one byte", "x"},
		{"platform example", realisticSecret},
		{"unicode", "gehéim—秘密—🔑"},
		{"binary", extension.Secret([]byte{0, 1, 2, 0xff, 0xfe, '.', 0})},
		{"long", extension.Secret(strings.Repeat("abcdefghij", 500))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const aad = "instance-secret:i-1"
			sealed := seal(t, kr, tt.plain, aad)
			got, err := kr.Open(sealed, aad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got.Reveal() != tt.plain.Reveal() {
				t.Errorf("got %q, want %q", got.Reveal(), tt.plain.Reveal())
			}
			if len(tt.plain) >= 8 && strings.Contains(sealed, tt.plain.Reveal()) {
				t.Errorf("sealed value %q contains the plaintext", sealed)
			}
			if !kr.SealedWithCurrentKey(sealed) {
				t.Errorf("SealedWithCurrentKey(fresh value) got false, want true")
			}
			if again := seal(t, kr, tt.plain, aad); again == sealed {
				t.Errorf("two seals of one value are equal (%q): want a fresh nonce each time", sealed)
			}
		})
	}
}

func TestSealedValueNamesItsKey(t *testing.T) {
	key := extensiontest.Key(t)
	kr := newKeyring(t, key)
	sealed := seal(t, kr, realisticSecret, "aad")
	if got, want := kr.KeyIDs(), []string{extension.KeyID(key)}; !cmp.Equal(got, want) {
		t.Errorf("KeyIDs() got %v, want %v", got, want)
	}
	if want := "v1." + extension.KeyID(key) + "."; !strings.HasPrefix(sealed, want) {
		t.Errorf("sealed value got %q, want prefix %q", sealed, want)
	}
}

func TestOpenWithOtherAAD(t *testing.T) {
	kr := newKeyring(t, extensiontest.Key(t))
	sealed := seal(t, kr, realisticSecret, "instance-secret:i-1")
	tests := []struct {
		name string
		aad  string
	}{
		{"another instance", "instance-secret:i-2"},
		{"empty", ""},
		{"prefix only", "instance-secret:"},
		{"longer", "instance-secret:i-1x"},
		{"other purpose, same instance", "user-token:i-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kr.Open(sealed, tt.aad)
			if !errors.Is(err, extension.ErrUnsealable) {
				t.Errorf("got (%q, %v), want error %v", got.Reveal(), err, extension.ErrUnsealable)
			}
		})
	}
}

// TestOpenFlippedByte flips every bit of every byte of the decoded body (nonce, ciphertext,
// tag) and encodes it canonically again: AES-GCM must refuse each one.
func TestOpenFlippedByte(t *testing.T) {
	kr := newKeyring(t, extensiontest.Key(t))
	const aad = "instance-secret:i-1"
	sealed := seal(t, kr, realisticSecret, aad)
	head, body := splitSealed(t, sealed)
	for i := range body {
		for bit := range 8 {
			damaged := bytes.Clone(body)
			damaged[i] ^= 1 << bit
			in := head + base64.RawURLEncoding.EncodeToString(damaged)
			if got, err := kr.Open(in, aad); !errors.Is(err, extension.ErrUnsealable) {
				t.Errorf("byte %d bit %d flipped: got (%q, %v), want error %v", i, bit, got.Reveal(), err, extension.ErrUnsealable)
			}
		}
	}
}

// TestOpenAlteredText changes every character of the sealed text to a neighbour in the
// base64url alphabet: a sealed value that is not byte-for-byte the one Seal made must not
// open.
func TestOpenAlteredText(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	kr := newKeyring(t, extensiontest.Key(t))
	const aad = "instance-secret:i-1"
	// 12 bytes of nonce + 43 + 16 bytes of tag = 71 bytes, which base64 cannot encode
	// without spare bits in the last character.
	sealed := seal(t, kr, realisticSecret, aad)
	for i := range len(sealed) {
		var repl byte
		if j := strings.IndexByte(alphabet, sealed[i]); j >= 0 {
			repl = alphabet[j^1]
		} else {
			repl = 'Z'
		}
		altered := sealed[:i] + string(repl) + sealed[i+1:]
		if got, err := kr.Open(altered, aad); err == nil {
			t.Errorf("character %d of %d changed %q→%q: Open got (%q, nil), want an error",
				i, len(sealed), sealed[i], repl, got.Reveal())
		}
	}
}

func TestOpenMalformed(t *testing.T) {
	kr := newKeyring(t, extensiontest.Key(t))
	const aad = "aad"
	sealed := seal(t, kr, realisticSecret, aad)
	head, body := splitSealed(t, sealed)
	enc := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"garbage", "not a sealed value"},
		{"prefix only", "v1"},
		{"prefix and dot", "v1."},
		{"no body", "v1." + kr.KeyIDs()[0]},
		{"empty body", head},
		{"other version", "v2" + strings.TrimPrefix(sealed, "v1")},
		{"upper-case version", "V1" + strings.TrimPrefix(sealed, "v1")},
		{"empty key id", "v1.." + enc(body)},
		{"body not base64", head + "!!!!"},
		{"body padded", head + base64.URLEncoding.EncodeToString(body)},
		{"body standard alphabet", head + strings.NewReplacer("-", "+", "_", "/").Replace(enc(body)) + "+/"},
		{"one body byte", head + enc(body[:1])},
		{"nonce only", head + enc(body[:12])},
		{"nonce and short tag", head + enc(body[:12+15])},
		{"truncated by one byte", head + enc(body[:len(body)-1])},
		{"truncated text", sealed[:len(sealed)-1]},
		{"extra byte", head + enc(append(bytes.Clone(body), 0))},
		{"extra dot", sealed + "."},
		{"doubled", sealed + sealed},
		{"leading space", " " + sealed},
		{"trailing newline", sealed + "\n"},
		{"unknown key id", "v1.00000000." + enc(body)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kr.Open(tt.in, aad)
			if !errors.Is(err, extension.ErrUnsealable) {
				t.Errorf("Open(%q) got (%q, %v), want error %v", tt.in, got.Reveal(), err, extension.ErrUnsealable)
			}
			_ = kr.SealedWithCurrentKey(tt.in) // must not panic either
		})
	}
}

func TestKeyringRotation(t *testing.T) {
	keyA, keyB := extensiontest.Key(t), extensiontest.Key(t)
	const aad = "instance-secret:i-1"
	oldSealed := seal(t, newKeyring(t, keyA), realisticSecret, aad)

	rotating := newKeyring(t, keyB, keyA)
	got, err := rotating.Open(oldSealed, aad)
	if err != nil || got.Reveal() != realisticSecret {
		t.Errorf("[B, A] opening a value sealed by A: got (%q, %v), want (%q, nil)", got.Reveal(), err, realisticSecret)
	}
	if rotating.SealedWithCurrentKey(oldSealed) {
		t.Errorf("[B, A] SealedWithCurrentKey(sealed by A) got true, want false")
	}
	newSealed := seal(t, rotating, realisticSecret, aad)
	if !rotating.SealedWithCurrentKey(newSealed) {
		t.Errorf("[B, A] SealedWithCurrentKey(sealed by [B, A]) got false, want true")
	}
	if want := "v1." + extension.KeyID(keyB) + "."; !strings.HasPrefix(newSealed, want) {
		t.Errorf("[B, A] sealed %q, want prefix %q (the first key seals)", newSealed, want)
	}
	if got, want := rotating.KeyIDs(), []string{extension.KeyID(keyB), extension.KeyID(keyA)}; !cmp.Equal(got, want) {
		t.Errorf("KeyIDs() got %v, want %v", got, want)
	}

	onlyB := newKeyring(t, keyB)
	if got, err := onlyB.Open(newSealed, aad); err != nil || got.Reveal() != realisticSecret {
		t.Errorf("[B] opening a value sealed by [B, A]: got (%q, %v), want (%q, nil)", got.Reveal(), err, realisticSecret)
	}
	_, err = onlyB.Open(oldSealed, aad)
	if !errors.Is(err, extension.ErrUnsealable) {
		t.Errorf("[B] opening a value sealed by A: got %v, want %v", err, extension.ErrUnsealable)
	}
	if err != nil && !strings.Contains(err.Error(), extension.KeyID(keyA)) {
		t.Errorf("[B] opening a value sealed by A: got error %q, want it to name key id %s", err, extension.KeyID(keyA))
	}
	if err != nil && strings.Contains(err.Error(), realisticSecret) {
		t.Errorf("got error %q, which contains the secret", err)
	}
	if onlyB.SealedWithCurrentKey(oldSealed) {
		t.Errorf("[B] SealedWithCurrentKey(sealed by A) got true, want false")
	}
}

func TestNewKeyring(t *testing.T) {
	keyA, keyB := extensiontest.Key(t), extensiontest.Key(t)
	tests := []struct {
		name    string
		keys    [][]byte
		wantErr bool
		wantIs  error // checked with errors.Is when set
		wantIDs []string
	}{
		{name: "nil list", keys: nil, wantErr: true, wantIs: extension.ErrNoKeys},
		{name: "empty list", keys: [][]byte{}, wantErr: true, wantIs: extension.ErrNoKeys},
		{name: "empty key", keys: [][]byte{{}}, wantErr: true},
		{name: "16 bytes (AES-128)", keys: [][]byte{keyA[:16]}, wantErr: true},
		{name: "24 bytes (AES-192)", keys: [][]byte{keyA[:24]}, wantErr: true},
		{name: "31 bytes", keys: [][]byte{keyA[:31]}, wantErr: true},
		{name: "33 bytes", keys: [][]byte{append(bytes.Clone(keyA), 0)}, wantErr: true},
		{name: "second key wrong size", keys: [][]byte{keyA, keyB[:16]}, wantErr: true},
		{name: "duplicate", keys: [][]byte{keyA, keyA}, wantErr: true},
		{name: "duplicate, not adjacent", keys: [][]byte{keyA, keyB, bytes.Clone(keyA)}, wantErr: true},
		{name: "one key", keys: [][]byte{keyA}, wantIDs: []string{extension.KeyID(keyA)}},
		{name: "two keys", keys: [][]byte{keyA, keyB}, wantIDs: []string{extension.KeyID(keyA), extension.KeyID(keyB)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := extension.NewKeyring(tt.keys)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("got error %v, want error: %v", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("got error %v, want %v", err, tt.wantIs)
			}
			if err != nil {
				for _, k := range tt.keys {
					if len(k) > 0 && (strings.Contains(err.Error(), fmt.Sprintf("%x", k)) ||
						strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(k))) {
						t.Errorf("error %q contains key material", err)
					}
				}
				if kr != nil {
					t.Errorf("got keyring %v with error %v, want nil", kr, err)
				}
				return
			}
			if diff := cmp.Diff(tt.wantIDs, kr.KeyIDs()); diff != "" {
				t.Errorf("KeyIDs() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKeyID(t *testing.T) {
	keyA, keyB := extensiontest.Key(t), extensiontest.Key(t)
	if got, want := extension.KeyID(keyA), extension.KeyID(bytes.Clone(keyA)); got != want {
		t.Errorf("KeyID of equal keys: got %q and %q, want equal", got, want)
	}
	if a, b := extension.KeyID(keyA), extension.KeyID(keyB); a == b {
		t.Errorf("KeyID of different keys: got %q for both, want different", a)
	}
	id := extension.KeyID(keyA)
	if strings.Contains(fmt.Sprintf("%x", keyA), id) {
		t.Errorf("KeyID %q is a substring of the key's hex, want a fingerprint", id)
	}
	if strings.ContainsRune(id, '.') || id == "" {
		t.Errorf("KeyID got %q, want a non-empty id without '.' (the sealed format's separator)", id)
	}
}

// TestNilKeyring: a Store opened without keys has a nil keyring (Options' zero value is
// documented as valid), so every method must answer instead of panicking.
func TestNilKeyring(t *testing.T) {
	var kr *extension.Keyring
	sealed := seal(t, newKeyring(t, extensiontest.Key(t)), realisticSecret, "aad")
	tests := []struct {
		name string
		call func() error
	}{
		{"Seal", func() error {
			if _, err := kr.Seal(realisticSecret, "aad"); !errors.Is(err, extension.ErrNoKeys) {
				return fmt.Errorf("got %v, want %v", err, extension.ErrNoKeys)
			}
			return nil
		}},
		{"Open", func() error {
			if _, err := kr.Open(sealed, "aad"); !errors.Is(err, extension.ErrNoKeys) {
				return fmt.Errorf("got %v, want %v", err, extension.ErrNoKeys)
			}
			return nil
		}},
		{"SealedWithCurrentKey", func() error {
			if kr.SealedWithCurrentKey(sealed) {
				return errors.New("got true, want false")
			}
			return nil
		}},
		{"KeyIDs", func() error {
			if ids := kr.KeyIDs(); len(ids) != 0 {
				return fmt.Errorf("got %v, want none", ids)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := callRecovering(tt.call); err != nil {
				t.Error(err)
			}
		})
	}
}

func callRecovering(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// TestSecretCopiedToAnotherInstance: a sealed secret copied onto another instance's row
// (by a bad restore or a hand-edited database) must not open there.
func TestSecretCopiedToAnotherInstance(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := extensiontest.NewStore(t, d)
		const secret1, secret2 = "secret-of-instance-one-Qx7mT2vLp9RkW4", "secret-of-instance-two-sNz8bYc3HfJ6d"
		mustApply(t, s, addedEvent("i-1", at(1), secret1), extension.OutcomeApplied)
		mustApply(t, s, addedEvent("i-2", at(1), secret2), extension.OutcomeApplied)

		_, err := s.SQLDB().ExecContext(ctx,
			d.Rebind("UPDATE instances SET sealed_secret = (SELECT sealed_secret FROM instances WHERE id = ?) WHERE id = ?"),
			"i-1", "i-2")
		if err != nil {
			t.Fatalf("copy sealed secret: %v", err)
		}
		in, got, err := s.InstanceCredentials(ctx, "i-2")
		if !errors.Is(err, extension.ErrUnsealable) {
			t.Errorf("InstanceCredentials(i-2) got (%v, %q, %v), want error %v", in, got.Reveal(), err, extension.ErrUnsealable)
		}
		if err != nil && (strings.Contains(err.Error(), secret1) || strings.Contains(err.Error(), secret2)) {
			t.Errorf("got error %q, which contains a secret", err)
		}
		if _, got, err := s.InstanceCredentials(ctx, "i-1"); err != nil || got.Reveal() != secret1 {
			t.Errorf("InstanceCredentials(i-1) got (%q, %v), want (%q, nil)", got.Reveal(), err, secret1)
		}
	})
}

// FuzzOpen feeds arbitrary text to Open: it must never panic, must fail only with
// ErrUnsealable, and must succeed only for a value Seal made, unchanged. The fuzzer runs
// the target in several processes and Seal draws a random nonce, so "made by Seal" is
// judged without a list of sealed values: Seal writes "v1.KEYID.BODY" with BODY in
// canonical unpadded base64url, and AES-GCM lets only a plaintext that was really sealed
// (one of the seeds' plaintexts) come out of Open.
func FuzzOpen(f *testing.F) {
	// Fixed keys, so that every fuzzing process opens the seeds, and a failing input
	// saved by the fuzzer fails again on replay.
	key := bytes.Repeat([]byte{0x5a}, extension.KeySize)
	other := bytes.Repeat([]byte{0xa5}, extension.KeySize)
	kr := newKeyring(f, key, other)
	const aad = "instance-secret:i-1"
	plains := []extension.Secret{"", "x", realisticSecret, "gehéim—秘密"}
	sealedHere := map[string]extension.Secret{} // made by Seal in this process
	for _, plain := range plains {
		sealed := seal(f, kr, plain, aad)
		sealedHere[sealed] = plain
		head, body := splitSealed(f, sealed)
		f.Add(sealed)
		f.Add(sealed[:len(sealed)-1])
		f.Add(sealed + "A")
		f.Add(strings.Replace(sealed, "v1.", "v2.", 1))
		f.Add(head)
		f.Add(head + base64.RawURLEncoding.EncodeToString(body[:len(body)/2]))
		flipped := bytes.Clone(body)
		flipped[len(flipped)/2] ^= 0x01
		f.Add(head + base64.RawURLEncoding.EncodeToString(flipped))
	}
	oldSealed := seal(f, newKeyring(f, other), realisticSecret, aad) // sealed by the second key
	sealedHere[oldSealed] = realisticSecret
	f.Add(oldSealed)
	f.Add("")
	f.Add("v1..")
	f.Add("v1.00000000.AAAA")
	f.Add("..............")

	keyIDs := map[string]bool{extension.KeyID(key): true, extension.KeyID(other): true}
	// canonical reports whether in has the exact form Seal writes.
	canonical := func(in string) bool {
		parts := strings.Split(in, ".")
		if len(parts) != 3 || parts[0] != "v1" || !keyIDs[parts[1]] {
			return false
		}
		body, err := base64.RawURLEncoding.DecodeString(parts[2])
		return err == nil && base64.RawURLEncoding.EncodeToString(body) == parts[2]
	}

	f.Fuzz(func(t *testing.T, in string) {
		got, err := kr.Open(in, aad)
		_ = kr.SealedWithCurrentKey(in) // must not panic either
		if err != nil {
			if !errors.Is(err, extension.ErrUnsealable) {
				t.Errorf("Open(%q) got error %v, want %v", in, err, extension.ErrUnsealable)
			}
			if _, ok := sealedHere[in]; ok {
				t.Errorf("Open(%q) of a value Seal made got %v, want nil", in, err)
			}
			return
		}
		if !canonical(in) {
			t.Errorf("Open(%q) got (%q, nil) for text Seal does not write", in, got.Reveal())
		}
		if !slices.Contains(plains, got) {
			t.Errorf("Open(%q) got (%q, nil), a plaintext that was never sealed", in, got.Reveal())
		}
		if want, ok := sealedHere[in]; ok && got != want {
			t.Errorf("Open(%q) got %q, want %q", in, got.Reveal(), want.Reveal())
		}
	})
}
