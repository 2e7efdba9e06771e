package extension

import (
	"strconv"
	"strings"
)

// An invitation or password-reset link waits in the job queue's arguments until its
// e-mail is sent. It is sealed there, with associated data of its own: bound to the
// instance and the recipient, a sealed link copied into another job (for another address
// or instance) does not open, and no other sealed value of the store opens as a link.
const aadMailLink = "mail-link"

func mailLinkAAD(instanceID, to string) string {
	return aadMailLink + ":" + strconv.Itoa(len(instanceID)) + ":" + instanceID + ":" + strings.ToLower(to)
}

// SealMailLink seals a link for an e-mail to the address to, on behalf of the instance.
// It fails with ErrNoKeys without encryption keys.
func (s *Store) SealMailLink(link Secret, instanceID, to string) (string, error) {
	return s.keys.Seal(link, mailLinkAAD(instanceID, to))
}

// OpenMailLink opens what SealMailLink sealed for the same instance and address;
// ErrUnsealable for anything else (another instance or address, a key no longer
// configured, a damaged value).
func (s *Store) OpenMailLink(sealed, instanceID, to string) (Secret, error) {
	return s.keys.Open(sealed, mailLinkAAD(instanceID, to))
}
