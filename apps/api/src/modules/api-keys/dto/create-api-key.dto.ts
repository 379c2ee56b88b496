import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { API_SCOPES } from '@app/common';
import { ArrayMaxSize, IsArray, IsDefined, IsIn, IsString, Length } from 'class-validator';
import { IsOmittable } from '@app/common';

export class CreateApiKeyDto {
  @ApiProperty({ example: 'billing-service' })
  @IsDefined()
  @IsString()
  @Length(1, 200)
  name!: string;

  @ApiPropertyOptional({
    enum: API_SCOPES,
    isArray: true,
    description: 'Defaults to every scope except platform:admin. A key can never get a scope its creator lacks.',
  })
  @IsOmittable()
  @IsArray()
  @ArrayMaxSize(API_SCOPES.length)
  @IsIn(API_SCOPES, { each: true })
  scopes?: string[];
}
