import { SetMetadata } from '@nestjs/common';

export const IS_PUBLIC = 'auth:public';

/** Marks a route as reachable without a token (health, docs, token exchange, JWKS, SSO entry points). */
export const Public = () => SetMetadata(IS_PUBLIC, true);
