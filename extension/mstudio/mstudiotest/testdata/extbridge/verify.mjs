// verify.mjs checks a session token with mittwald's own @mittwald/ext-bridge, as an
// extension's Node backend would. MW_EXT_API_URL points ext-bridge at the platform
// (here: the simulator); the token comes from SESSION_TOKEN (or the first argument).
// With EXTENSION_SECRET set, the token is also exchanged through ext-bridge's
// getAccessToken. Prints {"claims": …, "exchanged": …} as JSON and exits 0, or prints
// why ext-bridge refused and exits 1. Tokens and secrets are never printed.
//
// Install once: npm ci --prefix extension/mstudio/mstudiotest/testdata/extbridge
import { getAccessToken, verify } from "@mittwald/ext-bridge/node";

const token = process.env.SESSION_TOKEN || process.argv[2];
if (!token) {
  console.error("usage: SESSION_TOKEN=… MW_EXT_API_URL=http://… node verify.mjs");
  process.exit(2);
}

try {
  const claims = await verify(token);
  const out = { claims };
  const secret = process.env.EXTENSION_SECRET;
  if (secret) {
    const { publicToken, expiry } = await getAccessToken(token, secret);
    out.exchanged = { publicToken: typeof publicToken === "string" && publicToken.length > 0, expiry };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
} catch (err) {
  const status = err?.response?.status ? ` (HTTP ${err.response.status})` : "";
  console.error(`ext-bridge refused: ${err?.name ?? "Error"}: ${err?.code ?? ""} ${err?.message ?? err}${status}`);
  process.exit(1);
}
