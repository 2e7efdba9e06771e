package mstudio

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
)

// retrievalKeyLen is the length of an access token retrieval key (ATReK): the spec fixes
// both minLength and maxLength of the request field at 37.
const retrievalKeyLen = 37

// UserToken is an access token bound to a platform user, with the refresh token that
// renews it. Refresh tokens rotate: each one works once.
type UserToken struct {
	Token        extension.Secret
	RefreshToken extension.Secret
	ExpiresAt    time.Time
}

// userTokenAnswer is the platform's answer to an ATReK exchange and to a refresh.
type userTokenAnswer struct {
	Token        string    `json:"token"`
	RefreshToken string    `json:"refreshToken"`
	ExpiresAt    time.Time `json:"expiresAt"`
}

func (a userTokenAnswer) userToken() (UserToken, error) {
	if a.Token == "" || a.RefreshToken == "" || a.ExpiresAt.IsZero() {
		return UserToken{}, errors.New("answer lacks token, refreshToken or expiresAt")
	}
	return UserToken{Token: extension.Secret(a.Token), RefreshToken: extension.Secret(a.RefreshToken), ExpiresAt: a.ExpiresAt}, nil
}

// RedeemRetrievalKey exchanges a single-use access token retrieval key, which the control
// panel put into our URL, for the user's token (POST /v2/authenticate-token-retrieval-key).
// The call needs no token: the key is the credential. A malformed key or user id is
// refused with ErrInvalidArgument before anything is sent. The platform's refusal of the
// key (unknown, used or expired) is an *Error with status 400.
//
// The exchange is sent again only when no connection was made: once the platform may have
// seen the key, it is spent.
func (c *Client) RedeemRetrievalKey(ctx context.Context, key, userID string) (UserToken, error) {
	if n := utf8.RuneCountInString(key); n != retrievalKeyLen {
		// The key itself stays out of the text, even a malformed one.
		return UserToken{}, fmt.Errorf("redeem retrieval key: %w: key has %d characters, want %d", ErrInvalidArgument, n, retrievalKeyLen)
	}
	if err := requireUUID("user id", userID); err != nil {
		return UserToken{}, fmt.Errorf("redeem retrieval key: %w", err)
	}
	in := struct {
		Key    string `json:"accessTokenRetrievalKey"`
		UserID string `json:"userId"`
	}{key, userID}
	var out userTokenAnswer
	cl := call{method: http.MethodPost, route: "/v2/authenticate-token-retrieval-key", in: in, out: &out, sensitive: []string{key}}
	if _, err := c.do(ctx, cl); err != nil {
		return UserToken{}, fmt.Errorf("redeem retrieval key: %w", err)
	}
	tok, err := out.userToken()
	if err != nil {
		return UserToken{}, fmt.Errorf("redeem retrieval key: %w", err)
	}
	return tok, nil
}

// RefreshUserToken renews a user token (PUT /v2/users/self/sessions). The refresh token
// rotates: store the answer's RefreshToken, the one passed in no longer works. The
// current access token goes along as X-Access-Token, as the platform's docs do; it may
// have expired already.
//
// Like every PUT it is repeated after a 429, 502, 503, 504 or a lost connection. Should
// the lost attempt have spent the refresh token, the repeat answers 400, and the session
// is lost either way.
func (c *Client) RefreshUserToken(ctx context.Context, accessToken, refreshToken extension.Secret) (UserToken, error) {
	if refreshToken.IsZero() {
		return UserToken{}, fmt.Errorf("refresh user token: %w: no refresh token", ErrInvalidArgument)
	}
	in := struct {
		RefreshToken string `json:"refreshToken"`
	}{refreshToken.Reveal()}
	var out userTokenAnswer
	cl := call{
		method: http.MethodPut, route: "/v2/users/self/sessions", token: accessToken.Reveal(),
		in: in, out: &out, sensitive: []string{refreshToken.Reveal()},
	}
	if _, err := c.do(ctx, cl); err != nil {
		return UserToken{}, fmt.Errorf("refresh user token: %w", err)
	}
	tok, err := out.userToken()
	if err != nil {
		return UserToken{}, fmt.Errorf("refresh user token: %w", err)
	}
	return tok, nil
}

// User is a platform user's profile.
type User struct {
	ID        string
	Email     string
	FirstName string
	LastName  string
}

// User reads a user's profile (GET /v2/users/{id}); id "self" is the token's own user.
func (c *Client) User(ctx context.Context, token extension.Secret, id string) (User, error) {
	if id != "self" {
		if err := requireUUID("user id", id); err != nil {
			return User{}, fmt.Errorf("get user: %w", err)
		}
	}
	var out struct {
		UserID string `json:"userId"`
		Email  string `json:"email"`
		Person struct {
			FirstName string `json:"firstName"`
			LastName  string `json:"lastName"`
		} `json:"person"`
	}
	if err := c.get(ctx, token, "/v2/users/{id}", id, &out); err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	if out.UserID == "" {
		return User{}, errors.New("get user: answer has no userId")
	}
	return User{ID: out.UserID, Email: out.Email, FirstName: out.Person.FirstName, LastName: out.Person.LastName}, nil
}
