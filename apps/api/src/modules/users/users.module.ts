import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DenylistModule } from '../auth/denylist/denylist.module';
import { OrganizationsModule } from '../organizations/organizations.module';
import { RolesModule } from '../roles/roles.module';
import { IdempotencyKeyEntity } from './entities/idempotency-key.entity';
import { RefreshTokenEntity } from './entities/refresh-token.entity';
import { UserActivityMonthEntity, UserEntity, UserRoleEntity } from './entities/user.entity';
import { IdempotencyInterceptor } from './idempotency.interceptor';
import { UserLoginService } from './user-login.service';
import { UsersController } from './users.controller';
import { UsersRepository } from './users.repository';
import { UsersService } from './users.service';

@Module({
  imports: [
    TypeOrmModule.forFeature([UserEntity, UserRoleEntity, UserActivityMonthEntity, RefreshTokenEntity, IdempotencyKeyEntity]),
    RolesModule,
    DenylistModule,
    OrganizationsModule,
  ],
  controllers: [UsersController],
  providers: [UsersRepository, UsersService, UserLoginService, IdempotencyInterceptor],
  exports: [UsersService, UserLoginService, UsersRepository],
})
export class UsersModule {}
