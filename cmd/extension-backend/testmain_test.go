package main

import (
	"os"
	"testing"
)

// runAsBinary, set in the environment, makes the test binary behave as extension-backend
// itself: commands that start this binary again (bench webhooks --baseline starts bench
// prototype) start the test binary, which then runs main instead of the tests.
const runAsBinary = "EXT_TEST_RUN_AS_BINARY"

func TestMain(m *testing.M) {
	if os.Getenv(runAsBinary) == "1" {
		main()
		os.Exit(0)
	}
	os.Setenv(runAsBinary, "1") // for the processes the tests start; this one has begun
	os.Exit(m.Run())
}
