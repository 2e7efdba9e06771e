package frontend_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/labstack/echo/v4"
)

// BenchmarkDashboard renders the dashboard through the whole path (front, session
// lookup, account and instance from SQLite, template) beside a baseline that renders the
// same page from a struct without the database, both at 32 concurrent requests. It
// reports pages/s and the p99 latency.
//
//	go test ./frontend -run '^$' -bench Dashboard -benchtime 5000x
func BenchmarkDashboard(b *testing.B) {
	app := apptest.New(b, apptest.Options{})
	p := app.Pages
	in := app.Install(b, mstudiotest.InstanceSpec{})
	if err := app.Store.SetContextName(b.Context(), in.ID, "Shop & Blog", time.Now()); err != nil {
		b.Fatal(err)
	}
	acc, _, err := app.Store.EnsurePlatformAccount(b.Context(), in.ID, app.User(b, "Ada Admin").ID, "ada@example.test", "Ada Admin", extension.RoleMember)
	if err != nil {
		b.Fatal(err)
	}
	app.Front.GET("/app/:instanceId", p.Dashboard, p.RequireSession())
	// The baseline: the same page from values read once, through the same engine and
	// front: what the path adds is the session lookup and the reads of each view.
	stored, err := app.Store.InstanceByID(b.Context(), in.ID)
	if err != nil {
		b.Fatal(err)
	}
	deliveries, err := app.Store.RecentDeliveries(b.Context(), in.ID, 5, 20_000)
	if err != nil || len(deliveries) == 0 {
		b.Fatalf("deliveries %v, %v: want the install's", deliveries, err)
	}
	app.Front.GET("/baseline/:instanceId", func(c echo.Context) error {
		return p.DashboardFrom(c, frontend.SignedIn{Account: acc, Instance: stored}, deliveries, nil)
	})
	app.Front.GET("/sign-in", func(c echo.Context) error {
		if err := p.Sessions.Start(c, acc, acc.PlatformUserID); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	})
	rec := httptest.NewRecorder()
	app.Front.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/sign-in", nil))
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		b.Fatalf("sign-in: %d %v", rec.Code, rec.Header())
	}

	run := func(b *testing.B, path string) {
		const workers = 32
		lat := make([]time.Duration, b.N)
		var next sync.WaitGroup
		jobs := make(chan int)
		b.ResetTimer()
		for range workers {
			next.Go(func() {
				for i := range jobs {
					req := httptest.NewRequest(http.MethodGet, path, nil)
					req.AddCookie(cookies[0])
					w := httptest.NewRecorder()
					start := time.Now()
					app.Front.ServeHTTP(w, req)
					lat[i] = time.Since(start)
					if w.Code != http.StatusOK {
						b.Errorf("%s: %d", path, w.Code)
					}
				}
			})
		}
		for i := range b.N {
			jobs <- i
		}
		close(jobs)
		next.Wait()
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pages/s")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.Run("path=baseline", func(b *testing.B) { run(b, "/baseline/"+in.ID) })
	b.Run("path=full", func(b *testing.B) { run(b, frontend.AppPath(in.ID)) })
}
