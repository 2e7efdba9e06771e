package atrek

// The package's handlers are registered in cmd's one route table:
//
//	GET /mstudio/sso                    Handler.Entry (the control panel's click-through)
//	GET /login/mstudio                  OAuth.Login
//	GET /login/mstudio/callback         OAuth.Callback
//	GET /login/mstudio/choose           OAuth.Choose
//	GET /mstudio/fragment/session       SessionTokenVerifier.FragmentSession behind its Middleware
