import { Body, Controller, Get, Header, HttpCode, Post, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuthContext, CurrentAuth, Public } from '@app/common';
import type { FastifyRequest } from 'fastify';
import { AuthService } from './auth.service';
import { AccountTokensService } from '../users/account-tokens.service';
import { ForgotPasswordDto, ResetPasswordDto, RevokeRequestDto, TokenRequestDto, VerifyEmailDto } from './dto/token-request.dto';
import { SigningKeysService } from './signing-keys.service';

@ApiTags('Authentication')
@Controller('auth')
export class AuthController {
  constructor(
    private readonly auth: AuthService,
    private readonly signingKeys: SigningKeysService,
    private readonly accountTokens: AccountTokensService,
  ) {}

  @Public()
  @Post('verify-email')
  @HttpCode(200)
  @ApiOperation({ summary: 'Redeem a verification token: sets email_verified (single use, 24 h)' })
  async verifyEmail(@Body() body: VerifyEmailDto) {
    await this.accountTokens.verifyEmail(body.token);
    return { email_verified: true };
  }

  @Public()
  @Post('password/forgot')
  @HttpCode(202)
  @ApiOperation({ summary: 'Mail a password-reset link (1 h) when the account exists; always 202, so it reveals nothing' })
  async forgotPassword(@Body() body: ForgotPasswordDto) {
    await this.accountTokens.forgotPassword(body.organization_id, body.email);
    return { message: 'If the account exists, a reset link has been sent' };
  }

  @Public()
  @Post('password/reset')
  @HttpCode(200)
  @ApiOperation({ summary: 'Redeem a reset token with a new password; every session of the user ends' })
  async resetPassword(@Body() body: ResetPasswordDto) {
    await this.accountTokens.resetPassword(body.token, body.password);
    return { password_reset: true };
  }

  @Public()
  @Post('token')
  @HttpCode(200)
  @Header('Cache-Control', 'no-store')
  @ApiOperation({
    summary: 'Exchange credentials for an access token (24 h)',
    description:
      '`client_credentials` with `api_key` (and optional space-separated `scope` to narrow it); ' +
      '`password` with `organization_id`, `email`, `password` (an end user: scopes are the union of their roles\' ' +
      'permissions, plus a `refresh_token`; 5 failures within 15 min lock the account with growing delays, 429 ACCOUNT_LOCKED); ' +
      '`refresh_token` with `refresh_token` (rotated on every use; presenting a used one revokes the whole session). ' +
      'Failed attempts are limited per client IP: after AUTH_FAILURES_PER_IP (100) failures in ' +
      'AUTH_FAILURE_WINDOW_SECONDS (600 s), every attempt from that IP is 429 RATE_LIMIT_EXCEEDED with ' +
      'Retry-After until the window ends. Successful exchanges are not counted.',
  })
  @ApiOkResponse({ description: '`{access_token, token_type: "Bearer", expires_in: 86400, scope}`' })
  token(@Body() body: TokenRequestDto, @Req() request: FastifyRequest) {
    return this.auth.exchange(body, request.ip, request.headers['user-agent']);
  }

  @Post('refresh')
  @HttpCode(200)
  @Header('Cache-Control', 'no-store')
  @ApiBearerAuth()
  @ApiOperation({ summary: 'A new token for the bearer; the presented token is revoked' })
  refresh(@CurrentAuth() auth: AuthContext) {
    return this.auth.refresh(auth);
  }

  @Post('revoke')
  @HttpCode(200)
  @ApiBearerAuth()
  @ApiOperation({
    summary: 'Revoke the bearer token, or `token` from the body (same organization); effective at once',
    description: 'A refresh token (`rt_…`) in `token` ends its whole session: its refresh tokens and the access tokens issued in it (RFC 7009). An unknown or foreign token is answered the same way and changes nothing.',
  })
  async revoke(@CurrentAuth() auth: AuthContext, @Body() body: RevokeRequestDto) {
    await this.auth.revoke(auth, body.token);
    return { revoked: true };
  }

  @Public()
  @Get('jwks')
  @Header('Cache-Control', 'public, max-age=300')
  @ApiOperation({ summary: 'Public keys that verify our access tokens (also at /.well-known/jwks.json)' })
  jwks() {
    return this.signingKeys.publicJwks();
  }
}

@ApiTags('Authentication')
@Controller('.well-known')
export class WellKnownController {
  constructor(private readonly signingKeys: SigningKeysService) {}

  @Public()
  @Get('jwks.json')
  @Header('Cache-Control', 'public, max-age=300')
  @ApiOperation({ summary: 'Public keys that verify our access tokens' })
  jwks() {
    return this.signingKeys.publicJwks();
  }
}
