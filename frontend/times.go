package frontend

import "time"

// How pages show a moment: always in UTC, and said so, as the server cannot know the
// reader's time zone without script.
func day(t time.Time) string    { return t.UTC().Format("2006-01-02") }
func minute(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") }

// minuteUTC is minute with the zone named after it, for pages whose column or sentence
// does not name it.
func minuteUTC(t time.Time) string { return minute(t) + " UTC" }
