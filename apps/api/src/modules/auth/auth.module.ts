import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ApiKeysModule } from '../api-keys/api-keys.module';
import { OrganizationsModule } from '../organizations/organizations.module';
import { PlanFeatureGuard } from '../organizations/plan-feature.guard';
import { RateLimitGuard } from '../organizations/rate-limit.guard';
import { UsersModule } from '../users/users.module';
import { AuthController, WellKnownController } from './auth.controller';
import { AuthGuard, ScopesGuard } from './auth.guard';
import { AuthService } from './auth.service';
import { DenylistModule } from './denylist/denylist.module';
import { SigningKeyEntity } from './entities/signing-key.entity';
import { SigningKeysService } from './signing-keys.service';
import { TokenService } from './token.service';

@Module({
  imports: [TypeOrmModule.forFeature([SigningKeyEntity]), DenylistModule, ApiKeysModule, OrganizationsModule, UsersModule],
  controllers: [AuthController, WellKnownController],
  providers: [SigningKeysService, TokenService, AuthService, { provide: APP_GUARD, useClass: AuthGuard },
    // Guards run in this order: who is calling, how much they may call, what their token allows,
    // then what their plan allows.
    { provide: APP_GUARD, useExisting: RateLimitGuard },
    { provide: APP_GUARD, useClass: ScopesGuard },
    { provide: APP_GUARD, useExisting: PlanFeatureGuard },
  ],
  exports: [TokenService, SigningKeysService, AuthService],
})
export class AuthModule {}
