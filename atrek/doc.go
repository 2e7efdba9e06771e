// Package atrek owns the single sign-on entry of hosting customers: everything that turns
// a platform user who arrives from the control panel into someone the backend may act for.
//
// It covers the ways such a user arrives:
//   - the click-through from the control panel, whose URL carries a single-use access
//     token retrieval key (ATReK, the package's name), redeemed once for the user's token;
//   - a direct visit, signed in through the platform's OAuth2 authorization code flow
//     with PKCE;
//   - session tokens of frontend fragments: short-lived JWTs the platform signs for a user
//     in an extension instance, sent with each request in the x-session-token header and
//     verified here against the platform's session_token keys.
//
// The first two end in a server-side session (a random id in a cookie, only its hash
// stored, revocable) whose user tokens are kept sealed and refreshed before they expire;
// a session token is verified on every request and never stored.
//
// The package uses the domain (extension) and the platform client (extension/mstudio);
// it does not import the other edge packages. What they need from it, such as the
// session middleware, cmd hands over.
package atrek
