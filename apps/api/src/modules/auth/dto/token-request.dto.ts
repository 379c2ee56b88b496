import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsDefined, IsIn, IsString, Length, MaxLength } from 'class-validator';
import { IsOmittable } from '@app/common';

export const GRANT_TYPES = ['client_credentials', 'password', 'refresh_token'] as const;
export type GrantType = (typeof GRANT_TYPES)[number];

/** POST /auth/token. Which other fields are required depends on grant_type. */
export class TokenRequestDto {
  @ApiProperty({ enum: GRANT_TYPES })
  @IsDefined()
  @IsIn(GRANT_TYPES, { context: { code: 'UNSUPPORTED_GRANT_TYPE' } })
  grant_type!: GrantType;

  @ApiPropertyOptional({ description: 'client_credentials: the API key', example: 'sk_live_…' })
  @IsOmittable()
  @IsString()
  @MaxLength(200)
  api_key?: string;

  @ApiPropertyOptional({ description: 'password: the organization of the end user', example: 'org_…' })
  @IsOmittable()
  @IsString()
  @MaxLength(100)
  organization_id?: string;

  @ApiPropertyOptional({ description: 'password: the end user\'s email' })
  @IsOmittable()
  @IsString()
  @MaxLength(254)
  email?: string;

  @ApiPropertyOptional({ description: 'password: the end user\'s password' })
  @IsOmittable()
  @IsString()
  @MaxLength(256)
  password?: string;

  @ApiPropertyOptional({ description: 'refresh_token: the refresh token to rotate' })
  @IsOmittable()
  @IsString()
  @MaxLength(200)
  refresh_token?: string;

  @ApiPropertyOptional({ description: 'Space-separated scopes to narrow the token to', example: 'user:read user:write' })
  @IsOmittable()
  @IsString()
  @MaxLength(1000)
  scope?: string;
}

export class RevokeRequestDto {
  @ApiPropertyOptional({ description: 'The token to revoke; defaults to the bearer token of the request' })
  @IsOmittable()
  @IsString()
  @MaxLength(8192)
  token?: string;
}

export class VerifyEmailDto {
  @ApiProperty({ description: 'The token from the verification link' })
  @IsDefined()
  @IsString()
  @MaxLength(200)
  token!: string;
}

export class ForgotPasswordDto {
  @ApiProperty({ example: 'org_…' })
  @IsDefined()
  @IsString()
  @MaxLength(100)
  organization_id!: string;

  @ApiProperty()
  @IsDefined()
  @IsString()
  @MaxLength(254)
  email!: string;
}

export class ResetPasswordDto {
  @ApiProperty({ description: 'The token from the reset link' })
  @IsDefined()
  @IsString()
  @MaxLength(200)
  token!: string;

  @ApiProperty({ minLength: 8, maxLength: 256 })
  @IsDefined()
  @IsString()
  @Length(8, 256)
  password!: string;
}
