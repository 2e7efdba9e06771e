package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/webhooks"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" for database/sql
	_ "github.com/mattn/go-sqlite3"    // "sqlite3" for database/sql
)

// prototype is the bare webhook receiver that `bench webhooks --baseline` measures the
// backend against: ed25519.Verify over the body, json.Unmarshal, and one INSERT (an
// upsert, as the load updates its instances after installing them) through database/sql,
// with nothing of ours in between. It is the webhooks package's benchmark baseline as a
// server on a real socket, so the backend's figure has a yardstick from the same machine,
// database and moment. It verifies with crypto/ed25519, as a receiver written by hand
// does; the backend's faster verification (curve25519-voi) is part of what is measured.
type prototype struct {
	db     *sql.DB
	table  string // of its own, dropped by close
	key    ed25519.PublicKey
	upsert string
	srv    *http.Server
	ln     net.Listener
}

// prototypePoolSize is the prototype's connection pool on PostgreSQL: the store's size, so
// that the comparison is of the path and not of the pool.
const prototypePoolSize = 16

// startPrototype creates the prototype's table in the database at databaseURL and serves
// it on addr (127.0.0.1:0: a loopback port); URL says where.
func startPrototype(ctx context.Context, databaseURL string, key ed25519.PublicKey, addr string) (*prototype, error) {
	dialect, dsn, err := extension.ParseDatabaseURL(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("--baseline: %w", err)
	}
	p := &prototype{key: key, table: "bench_prototype_" + strings.ToLower(rand.Text()[:10])}
	switch dialect {
	case extension.SQLite:
		// The store's SQLite settings: WAL, one writer connection.
		p.db, err = sql.Open("sqlite3", "file:"+strings.ReplaceAll(dsn, "%", "%25")+
			"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000&_txlock=immediate")
	case extension.Postgres:
		p.db, err = sql.Open("pgx", dsn)
	}
	if err != nil {
		return nil, fmt.Errorf("--baseline: %w", err)
	}
	if dialect == extension.SQLite {
		p.db.SetMaxOpenConns(1)
	} else {
		p.db.SetMaxOpenConns(prototypePoolSize)
		p.db.SetMaxIdleConns(prototypePoolSize)
	}
	if _, err := p.db.ExecContext(ctx, `CREATE TABLE `+p.table+` (id TEXT PRIMARY KEY, context_kind TEXT, context_id TEXT,
		consented_scopes TEXT, enabled BOOLEAN, variant_key TEXT, secret TEXT, last_event_ns BIGINT)`); err != nil {
		p.db.Close()
		return nil, fmt.Errorf("--baseline: create the prototype's table: %w", err)
	}
	p.upsert = `INSERT INTO ` + p.table + ` VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET
		context_kind = excluded.context_kind, context_id = excluded.context_id, consented_scopes = excluded.consented_scopes,
		enabled = excluded.enabled, variant_key = excluded.variant_key, secret = excluded.secret, last_event_ns = excluded.last_event_ns`
	if p.ln, err = net.Listen("tcp", addr); err != nil {
		p.close()
		return nil, err
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.receive), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelWarn)}
	go p.srv.Serve(p.ln)
	return p, nil
}

// URL is the prototype's webhook URL.
func (p *prototype) URL() string { return "http://" + p.ln.Addr().String() + "/mstudio/webhooks" }

func (p *prototype) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get(mstudio.HeaderSignature))
	if err != nil || !ed25519.Verify(p.key, body, sig) {
		http.Error(w, "signature", http.StatusUnauthorized)
		return
	}
	var d webhooks.Payload
	if err := json.Unmarshal(body, &d); err != nil || d.ID == "" {
		http.Error(w, "payload", http.StatusBadRequest)
		return
	}
	enabled := d.State != nil && d.State.Enabled != nil && *d.State.Enabled
	variant := ""
	if d.VariantKey != nil {
		variant = *d.VariantKey
	}
	scopes, _ := json.Marshal(d.ConsentedScopes)
	if _, err := p.db.ExecContext(r.Context(), p.upsert, d.ID, d.Context.Kind, d.Context.ID, string(scopes), enabled, variant,
		d.Secret.Reveal(), time.Now().UnixNano()); err != nil {
		http.Error(w, "insert", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// close stops the server and drops the prototype's table.
func (p *prototype) close() error {
	if p.srv != nil {
		p.srv.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.db.ExecContext(ctx, `DROP TABLE `+p.table)
	return errors.Join(err, p.db.Close())
}
