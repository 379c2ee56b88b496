import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DenylistModule } from '../auth/denylist/denylist.module';
import { OrganizationsModule } from '../organizations/organizations.module';
import { RolesModule } from '../roles/roles.module';
import { AccountTokensService } from './account-tokens.service';
import { EmailTokenEntity } from './entities/email-token.entity';
import { RefreshTokenEntity } from './entities/refresh-token.entity';
import { UserActivityMonthEntity, UserEntity, UserLoginSortKeyEntity, UserRoleEntity } from './entities/user.entity';
import { CredentialTokensCleanup } from './credential-tokens-cleanup.service';
import { CredentialTokensRepository } from './credential-tokens.repository';
import { PasswordHasher } from './password-hasher';
import { SearchIndexCleanup } from './search-index-cleanup.service';
import { SearchTrigramStats } from './search-trigram-stats.service';
import { UserLoginService } from './user-login.service';
import { UserUpdateBatcher } from './user-update-batcher';
import { UserCreateBatcher } from './user-create-batcher';
import { UsersController } from './users.controller';
import { UsersRepository } from './users.repository';
import { UsersService } from './users.service';

@Module({
  imports: [
    TypeOrmModule.forFeature([UserEntity, UserRoleEntity, UserActivityMonthEntity, UserLoginSortKeyEntity, RefreshTokenEntity, EmailTokenEntity]),
    RolesModule,
    DenylistModule,
    OrganizationsModule,
  ],
  controllers: [UsersController],
  providers: [UsersRepository, CredentialTokensRepository, UsersService, UserLoginService, AccountTokensService, PasswordHasher, SearchTrigramStats, SearchIndexCleanup, CredentialTokensCleanup, UserUpdateBatcher, UserCreateBatcher],
  exports: [UsersService, UserLoginService, UsersRepository, AccountTokensService, SearchTrigramStats],
})
export class UsersModule {}
