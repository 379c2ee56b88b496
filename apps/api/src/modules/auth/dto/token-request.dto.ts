import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsDefined, IsIn, IsOptional, IsString, MaxLength } from 'class-validator';

export const GRANT_TYPES = ['client_credentials'] as const;
export type GrantType = (typeof GRANT_TYPES)[number];

/** POST /auth/token. Which other fields are required depends on grant_type. */
export class TokenRequestDto {
  @ApiProperty({ enum: GRANT_TYPES })
  @IsDefined()
  @IsIn(GRANT_TYPES, { context: { code: 'UNSUPPORTED_GRANT_TYPE' } })
  grant_type!: GrantType;

  @ApiPropertyOptional({ description: 'client_credentials: the API key', example: 'sk_live_…' })
  @IsOptional()
  @IsString()
  @MaxLength(200)
  api_key?: string;

  @ApiPropertyOptional({ description: 'Space-separated scopes to narrow the token to', example: 'user:read user:write' })
  @IsOptional()
  @IsString()
  @MaxLength(1000)
  scope?: string;
}

export class RevokeRequestDto {
  @ApiPropertyOptional({ description: 'The token to revoke; defaults to the bearer token of the request' })
  @IsOptional()
  @IsString()
  @MaxLength(8192)
  token?: string;
}
