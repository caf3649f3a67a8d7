"""Authentication and authorization.

    passwords      PasswordHasher (argon2id) and the password policy
    tokens         TokenService: access JWTs (HS256) and opaque refresh tokens;
                   ensure_secret() for generated keys in data_dir
    oidc           OidcVerifier: OpenID Connect ID tokens (RS256 / ES256, JWKS)
    caller         Caller: who is calling (operator, server, user, anonymous)
    authenticator  Authenticator: an `authorization` header → Caller
    rules          RuleSet / ReadScope / RouterReadGate: model access rules
    throttle       LoginThrottle: failed sign-ins per (app, login) per minute

The submodules are imported explicitly (`from nexxus.auth.tokens import
TokenService`); this package imports none of them, so importing one does not
pull in the others' dependencies.
"""
