import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, IsArray, IsDefined, IsString, Length, Matches, MaxLength } from 'class-validator';
import { IsOmittable } from '@app/common';

const SLUG = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const PERMISSION = /^[A-Za-z0-9_.:*-]{1,100}$/;

export class CreateRoleDto {
  @ApiProperty({ example: 'billing_manager', description: 'Slug, unique in the organization: [a-z0-9_-], 1-63 chars' })
  @IsDefined()
  @IsString()
  @Matches(SLUG, { message: 'must be a slug of [a-z0-9_-] (1-63 characters)' })
  name!: string;

  @ApiPropertyOptional({ example: 'Billing manager' })
  @IsOmittable()
  @IsString()
  @Length(1, 200)
  display_name?: string;

  @ApiPropertyOptional()
  @IsOmittable()
  @IsString()
  @MaxLength(1000)
  description?: string;

  @ApiProperty({ example: ['user:read', 'reports:view'], description: "The API's scopes or your own permission strings" })
  @IsDefined()
  @IsArray()
  @ArrayMaxSize(200)
  @IsString({ each: true })
  @Matches(PERMISSION, { each: true, message: 'each permission is 1-100 of [A-Za-z0-9_.:*-]' })
  permissions!: string[];
}

export class UpdateRoleDto {
  @ApiPropertyOptional({ description: 'Built-in roles cannot be renamed' })
  @IsOmittable()
  @IsString()
  @Matches(SLUG, { message: 'must be a slug of [a-z0-9_-] (1-63 characters)' })
  name?: string;

  @ApiPropertyOptional()
  @IsOmittable()
  @IsString()
  @Length(1, 200)
  display_name?: string;

  @ApiPropertyOptional()
  @IsOmittable()
  @IsString()
  @MaxLength(1000)
  description?: string;

  @ApiPropertyOptional({ description: 'Replaces the permissions; every holder is affected at once (their next token)' })
  @IsOmittable()
  @IsArray()
  @ArrayMaxSize(200)
  @IsString({ each: true })
  @Matches(PERMISSION, { each: true, message: 'each permission is 1-100 of [A-Za-z0-9_.:*-]' })
  permissions?: string[];
}
